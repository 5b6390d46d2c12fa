"""The 12 automated checks of the smoke matrix.

Set A: ``pytest -m setA`` (rehearsal, dev branch or sandbox). Set B: ``pytest -m setB --db-url PROD``
(production window: read-only, database only). Select by id with ``--check A3,A7`` or ``-k A3``.
Every check runs on the read-only connection of ``cutover_checker``; the queries are in
cutover/checks.py, written from the plan independently of the cutover module.
"""

from __future__ import annotations

import pytest

from cutover.suite.allure_out import verdict
from cutover.suite.checks.sql import Checker

setA, setB, sql = pytest.mark.setA, pytest.mark.setB, pytest.mark.sql


@setA
@setB
@sql
@pytest.mark.check("A1")
def test_A1_schema_head(cutover_checker: Checker) -> None:
    verdict(cutover_checker.a1())


@setA
@setB
@sql
@pytest.mark.check("A2")
def test_A2_target_tenant(cutover_checker: Checker) -> None:
    verdict(cutover_checker.a2())


@setA
@setB
@sql
@pytest.mark.check("A3")
def test_A3_nothing_patient_owned_on_source(cutover_checker: Checker, patient_table: str) -> None:
    verdict(cutover_checker.a3(patient_table))


@setA
@setB
@sql
@pytest.mark.check("A4")
def test_A4_references_tenant_consistent(cutover_checker: Checker, reference: str) -> None:
    verdict(cutover_checker.a4(reference))


@setA
@sql
@pytest.mark.check("A5")
def test_A5_row_conservation(cutover_checker: Checker) -> None:
    verdict(cutover_checker.a5())


@setA
@setB
@sql
@pytest.mark.check("A6")
def test_A6_provider_data_intact(cutover_checker: Checker, owned_table: str) -> None:
    verdict(cutover_checker.a6(owned_table))


@setA
@setB
@sql
@pytest.mark.check("A7")
def test_A7_case_shares_resolve(cutover_checker: Checker) -> None:
    verdict(cutover_checker.a7())


@setA
@setB
@sql
@pytest.mark.check("A8")
def test_A8_events_classified(cutover_checker: Checker) -> None:
    verdict(cutover_checker.a8())


@setA
@setB
@sql
@pytest.mark.check("A9")
def test_A9_idempotency_keys(cutover_checker: Checker) -> None:
    verdict(cutover_checker.a9())


@setA
@sql
@pytest.mark.check("A10")
def test_A10_allow_list_exact(cutover_checker: Checker) -> None:
    verdict(cutover_checker.a10())


@setA
@sql
@pytest.mark.check("A20")
def test_A20_no_stragglers(cutover_checker: Checker) -> None:
    verdict(cutover_checker.a20())


@setA
@sql
@pytest.mark.check("A21")
def test_A21_rls_posture(cutover_checker: Checker) -> None:
    verdict(cutover_checker.a21())
