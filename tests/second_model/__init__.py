"""The second model: a schema unlike the reference one, with its reviewed plan and a data generator."""

from __future__ import annotations

from pathlib import Path

from cutover.sandbox.snapshot import Model
from tests.second_model import generator

HERE = Path(__file__).resolve().parent
PLAN = HERE / "plan.toml"
SCHEMA = HERE / "schema.sql"
MODEL = Model(SCHEMA, generator.generate, generator.GENERATOR_VERSION)

