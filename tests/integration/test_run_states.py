"""The state machine of runs and builds (``pipeline/states.py``), on a real SQLite and a real PostgreSQL database.

For every event and every state the table either moves (to the state it says), stays (nothing
changes, the function says False), or refuses (:class:`IllegalTransition`, nothing changes): each
case of the table is tried on rows in the database, through the function that both modes call.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TypeVar

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from assemblage.db import models as m
from assemblage.db.session import init_schema, make_engine, make_sessionmaker, session_scope
from assemblage.pipeline import states
from assemblage.pipeline.states import BUILD_RULES, RUN_RULES, RUN_STATUSES, IllegalTransition

pytestmark = pytest.mark.integration

BUILD_STATUSES = m.BUILD_STATUSES
T = TypeVar("T", m.Run, m.Build, m.Source)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def sessions(request, tmp_path_factory) -> Iterator[sessionmaker[Session]]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('states')}/t.sqlite")
        init_schema(engine)
        yield make_sessionmaker(engine)
        engine.dispose()
        return
    from tests.integration.service_stack import create_database, drop_database, require_services

    require_services("postgresql")
    name = f"asm_states_{uuid.uuid4().hex[:8]}"
    engine = make_engine(create_database(name))
    yield make_sessionmaker(engine)
    engine.dispose()
    drop_database(name)


def make_run(
    sessions: sessionmaker[Session],
    status: str,
    *,
    builds: tuple[str, ...] = ("pending", "running"),
    source: str = "fetched",
    expanded: bool = True,
) -> tuple[int, list[int], int]:
    """A run in ``status`` with one source (``source``) and one build per entry of ``builds``."""
    with session_scope(sessions) as s:
        rec = m.Recipe(name="r", text="x", sha256="0" * 64)
        s.add(rec)
        s.flush()
        run = m.Run(recipe_id=rec.id, status=status, expanded=expanded, notes=[])
        s.add(run)
        s.flush()
        src = m.Source(run_id=run.id, position=0, spec={"path": "x"}, label="x", kind="path", name="x", status=source)
        s.add(src)
        s.flush()
        ids = []
        for i, b_status in enumerate(builds):
            ident = f"linux-x86_64-gcc-12-O{i}"
            cfg = s.scalar(select(m.Configuration).where(m.Configuration.identifier == ident))
            if cfg is None:
                cfg = m.Configuration(
                    identifier=ident, platform="linux", arch="x86_64", toolchain="gcc-12", opt=f"O{i}"
                )
                s.add(cfg)
                s.flush()
            b = m.Build(run_id=run.id, source_id=src.id, configuration_id=cfg.id, status=b_status)
            if b_status == "running":
                b.worker = "w"
            s.add(b)
            s.flush()
            ids.append(b.id)
        return run.id, ids, src.id


def row(s: Session, model: type[T], row_id: int, *, lock: bool = False) -> T:
    found = s.get(model, row_id, with_for_update=lock)
    assert found is not None, f"no {model.__name__} {row_id}"
    return found


def run_status(sessions: sessionmaker[Session], run_id: int) -> str:
    with sessions() as s:
        return row(s, m.Run, run_id).status


def builds_of(sessions: sessionmaker[Session], ids: list[int]) -> list[tuple[str, str | None]]:
    with sessions() as s:
        return [(row(s, m.Build, i).status, row(s, m.Build, i).reason) for i in ids]


def apply_run_event(sessions: sessionmaker[Session], event: str, run_id: int) -> object:
    if event == "start":
        return states.start_run(sessions, run_id)
    if event == "finish":
        return states.finish_run(sessions, run_id)
    if event == "fail":
        return states.fail_run(sessions, run_id, "the recipe no longer validates")
    if event == "interrupt":
        return states.interrupt_run(sessions, run_id)
    if event == "cancel":
        return states.cancel_run(sessions, run_id)
    raise AssertionError(event)


RUN_CASES = [(event, status) for event in RUN_RULES for status in RUN_STATUSES]


def test_the_tables_name_every_state_once_per_event():
    for rules, statuses in ((RUN_RULES, RUN_STATUSES), (BUILD_RULES, BUILD_STATUSES)):
        for event, rule in rules.items():
            assert set(rule.moves) <= set(statuses) and rule.stays <= set(statuses), event
            assert not set(rule.moves) & rule.stays, f"{event}: a state both moves and stays"
    # what the modes rely on
    assert RUN_RULES["finish"].moves == {"running": "finished"}
    assert RUN_RULES["cancel"].stays == {"cancelled"}
    assert m.FINAL_STATUSES <= BUILD_RULES["finish"].stays  # a build that ended is never finished again


@pytest.mark.parametrize("event,status", RUN_CASES)
def test_run_event_from_each_state(sessions, event, status):
    """``finish`` sees no open build here (they would keep a running run open: see the next test)."""
    rule = RUN_RULES[event]
    open_builds = event != "finish"
    run_id, bids, src_id = make_run(
        sessions, status, builds=("pending", "running") if open_builds else ("succeeded",), source="pending"
    )
    before = builds_of(sessions, bids)
    if status in rule.moves:
        result = apply_run_event(sessions, event, run_id)
        target = rule.moves[status]
        assert run_status(sessions, run_id) == target
        if event in ("fail", "interrupt", "cancel"):
            reason = {"fail": "run_failed", "interrupt": "interrupted", "cancel": "cancelled"}[event]
            assert builds_of(sessions, bids) == [("skipped", reason)] * 2
            with sessions() as s:
                run = row(s, m.Run, run_id)
                assert run.finished_at is not None
                src = row(s, m.Source, src_id)
            # a cancelled or failed run fetches nothing more; an interrupted one keeps its sources for a rerun
            assert src.status == ("pending" if event == "interrupt" else "failed")
        if event == "cancel":
            assert result == states.CancelOutcome("cancelled", queued=1, running=1)
        elif event == "interrupt":
            assert result == 2
        else:
            assert result is True
    elif status in rule.stays:
        result = apply_run_event(sessions, event, run_id)
        assert result in (False, 0, states.CancelOutcome(status))
        assert run_status(sessions, run_id) == status
        assert builds_of(sessions, bids) == before
    else:
        with pytest.raises(IllegalTransition, match=f"cannot {event} run {run_id}: it is {status}"):
            apply_run_event(sessions, event, run_id)
        assert run_status(sessions, run_id) == status
        assert builds_of(sessions, bids) == before


def test_a_run_finishes_only_when_nothing_is_left(sessions):
    run_id, bids, _ = make_run(sessions, "running", builds=("succeeded", "running"))
    assert states.finish_run(sessions, run_id) is False and run_status(sessions, run_id) == "running"
    with session_scope(sessions) as s:
        assert states.finish_build(row(s, m.Build, bids[1], lock=True), "failed", "compile_error", "x")
    assert states.finish_run(sessions, run_id) is True and run_status(sessions, run_id) == "finished"
    not_expanded, _, _ = make_run(sessions, "running", builds=(), expanded=False)
    assert states.finish_run(sessions, not_expanded) is False  # its start task has not added its sources yet


def test_a_cancel_of_an_ended_run_says_how_it_ended(sessions):
    run_id, _, _ = make_run(sessions, "finished", builds=("succeeded",))
    with pytest.raises(IllegalTransition) as exc:
        states.cancel_run(sessions, run_id)
    assert exc.value.status == "finished" and "only a run that is pending or running can" in str(exc.value)
    assert states.cancel_run(sessions, 10**9) is None


def build_event(sessions: sessionmaker[Session], event: str, build_id: int) -> bool:
    with session_scope(sessions) as s:
        b = row(s, m.Build, build_id, lock=True)
        if event == "claim":
            return states.claim_build(b, "me")
        if event == "finish":
            return states.finish_build(b, "succeeded", None, None)
        if event == "skip":
            return states.skip_build(b, "source_unavailable", "the source was not fetched")
        if event == "release":
            return states.release_build(b)
    raise AssertionError(event)


BUILD_CASES = [(event, status) for event in BUILD_RULES for status in BUILD_STATUSES]


@pytest.mark.parametrize("event,status", BUILD_CASES)
def test_build_event_from_each_state(sessions, event, status):
    rule = BUILD_RULES[event]
    _, (bid,), _ = make_run(sessions, "running", builds=(status,))
    with sessions() as s:
        before = row(s, m.Build, bid)
        attempts, reason = before.attempts, before.reason
    if status in rule.moves:
        assert build_event(sessions, event, bid) is True
        target = rule.moves[status]
        with sessions() as s:
            b = row(s, m.Build, bid)
            assert b.status == ("succeeded" if target == "*" else target)
            if event == "claim":
                assert (b.worker, b.attempts) == ("me", attempts + 1) and b.started_at is not None
            if event == "release":
                assert b.worker is None and b.started_at is None
            if event in ("finish", "skip"):
                assert b.finished_at is not None
    else:
        assert status in rule.stays, "every build state moves or stays: any build message may come twice"
        assert build_event(sessions, event, bid) is False
        with sessions() as s:
            b = row(s, m.Build, bid)
            assert (b.status, b.reason, b.attempts) == (status, reason, attempts)


def test_a_cancelled_build_is_not_resurrected_by_its_result(sessions):
    run_id, (bid,), _ = make_run(sessions, "running", builds=("pending",))
    assert states.take_build(sessions, bid, "w1") == "running"
    assert states.cancel_run(sessions, run_id) == states.CancelOutcome("cancelled", queued=0, running=1)
    with session_scope(sessions) as s:  # the build's result arrives after the cancel
        assert states.finish_build(row(s, m.Build, bid, lock=True), "succeeded") is False
    assert states.record_internal_error(sessions, bid, RuntimeError("late")) == "skipped"
    assert builds_of(sessions, [bid]) == [("skipped", "cancelled")]
    assert states.take_build(sessions, bid, "w2") == "skipped"  # a copy of its message: it never starts
    assert states.take_build(sessions, 10**9, "w2") == "missing"


def test_a_result_must_be_a_final_status(sessions):
    _, (bid,), _ = make_run(sessions, "running", builds=("running",))
    with session_scope(sessions) as s:
        with pytest.raises(ValueError, match="'pending' is not a result"):
            states.finish_build(row(s, m.Build, bid), "pending")
    assert builds_of(sessions, [bid]) == [("running", None)]


def test_builds_are_ready_once_their_source_is_fetched(sessions):
    run_id, bids, src_id = make_run(sessions, "running", builds=("pending", "pending", "skipped"), source="pending")
    assert states.ready_builds(sessions, src_id) == []
    with session_scope(sessions) as s:
        assert states.source_fetched(row(s, m.Source, src_id)) is True
    ready = states.ready_builds(sessions, src_id)
    assert [bid for bid, _ in ready] == bids[:2]
    assert [config for _, config in ready] == ["linux-x86_64-gcc-12-O0", "linux-x86_64-gcc-12-O1"]
    _, failing, failed_src = make_run(sessions, "running", builds=("pending",), source="pending")
    states.fail_source(sessions, failed_src, "no such repository")
    assert states.ready_builds(sessions, failed_src) == []
    assert builds_of(sessions, failing) == [("skipped", "source_unavailable")]
    with session_scope(sessions) as s:  # a fetch that ends after its run was cancelled does not revive the source
        assert states.source_fetched(row(s, m.Source, failed_src)) is False
