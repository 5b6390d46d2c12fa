"""The window's times forecast from the rehearsal: linear in rows per table, each line against its slot."""

from __future__ import annotations

import pytest

from cutover.core.plan import DEFAULT_PLAN, Plan, load_plan
from cutover.suite import forecast

MINUTE = 60.0


@pytest.fixture(scope="module")
def plan() -> Plan:
    return load_plan(DEFAULT_PLAN)


def _report(plan: Plan) -> dict[str, object]:
    """An execute's report: 100 rows per moving table, each move step 1 s, 4 s of everything else."""
    moved = {t: 100 for group in plan.move_steps for t in group}
    steps = [{"name": "pre-flight inside the transaction", "seconds": 1.0},
             *({"name": f"move {', '.join(g)}", "seconds": 1.0} for g in plan.move_steps),
             {"name": "verify, write cutover.completed", "seconds": 2.0}]
    return {"moved": moved, "steps": steps, "duration_s": 4.0 + len(plan.move_steps), "writers_blocked_s": 5.0}


def _basis(plan: Plan, **kw: object) -> forecast.Basis:
    args: dict[str, object] = {"wal_bytes": 10 * 2 ** 20, "setb_s": 3.0, "reverse_s": 6.0, "restore_s": 30.0,
                               "durable": False}
    args.update(kw)
    return forecast.basis(_report(plan), plan, **args)  # type: ignore[arg-type]


def test_a_move_step_is_shared_among_its_tables_by_rows(plan: Plan) -> None:
    b = _basis(plan)
    group = next(g for g in plan.move_steps if len(g) > 1)
    assert sum(b.move_s[t] for t in group) == pytest.approx(1.0)
    assert b.other_s == pytest.approx(4.0) and b.preflight_s == 1.0 and b.verify_s == 2.0
    assert forecast.Basis.from_json(b.to_json()) == b


def test_ten_times_the_rows_forecasts_ten_times_the_time(plan: Plan) -> None:
    b = _basis(plan)
    production = {t: 1_000 for t in b.moved}
    lines = {ln.item: ln for ln in forecast.forecast(b, production, execute_slot=5 * MINUTE, setb_slot=2 * MINUTE,
                                                      rollback_bound=15 * MINUTE, rollback_fixed=7 * MINUTE)}
    assert lines["execute"].seconds == pytest.approx(10 * (4.0 + len(plan.move_steps)))
    assert lines["writers-blocked"].seconds == pytest.approx(50.0)
    assert lines["setb"].seconds == pytest.approx(30.0) and lines["reverse"].seconds == pytest.approx(60.0)
    assert lines["restore"].seconds == pytest.approx(300.0 + 7 * MINUTE)
    assert all(ln.fits for ln in lines.values())
    text = forecast.render(list(lines.values()))
    assert text[0].startswith(f"forecast execute: ~{10 * (4 + len(plan.move_steps)):.0f} s for "
                              f"{1_000 * len(b.moved):,} rows (slot 5 min): fits; assumes linear in rows per table")
    assert any(t.startswith("forecast wal: ~100.0 MB of WAL") and ": informational;" in t for t in text)
    assert all("sandbox without fsync" in t for t in text)


def test_one_big_table_is_scaled_by_its_own_rate(plan: Plan) -> None:
    """Linear per table: production's rows of a slow table weigh by that table's rate, not the average."""
    b = _basis(plan)
    slow = plan.move_steps[0][0]
    b.move_s[slow] = 100.0  # this table's move took 1 s per row in the rehearsal
    production = {t: 100 for t in b.moved} | {slow: 200}
    lines = {ln.item: ln for ln in forecast.forecast(b, production, execute_slot=5 * MINUTE, setb_slot=2 * MINUTE,
                                                      rollback_bound=15 * MINUTE, rollback_fixed=0.0)}
    assert lines["execute"].seconds is not None and lines["execute"].seconds > 200


def test_past_its_slot_is_not_a_fit_and_an_unmeasured_figure_never_fits(plan: Plan) -> None:
    b = _basis(plan, reverse_s=None, durable=True)
    production = {t: 1_000_000 for t in b.moved}
    lines = {ln.item: ln for ln in forecast.forecast(b, production, execute_slot=5 * MINUTE, setb_slot=2 * MINUTE,
                                                      rollback_bound=15 * MINUTE, rollback_fixed=7 * MINUTE)}
    assert not lines["execute"].fits and not lines["setb"].fits
    assert not lines["reverse"].fits and lines["reverse"].text.startswith("not rehearsed")
    assert lines["wal"].fits  # informational: it has no slot
    rendered = forecast.render(list(lines.values()))
    assert any(t.startswith("forecast execute:") and ": PAST THE SLOT;" in t for t in rendered)
    assert all("measured on a server with fsync on" in t for t in rendered)
