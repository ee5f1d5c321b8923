"""The embedded mode: the same steps, run in-process by a small thread pool, into one folder.

``DIR/dataset.sqlite`` holds the metadata, ``DIR/objects/`` the binaries (by
sha256), ``DIR/logs/`` the build logs, ``DIR/sources/`` the fetched sources.
Builds are subprocesses and analysis runs in forked children, so threads are
enough to keep every core busy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from assemblage.builds.runner import allow_builds, kill_all_builds
from assemblage.db import models as m
from assemblage.db.migrate import prepare_dataset
from assemblage.db.session import make_engine, make_sessionmaker, sqlite_url
from assemblage.pipeline import states
from assemblage.pipeline.cancel import CancelWatch
from assemblage.pipeline.context import Context
from assemblage.pipeline.steps import complete_crawl, crawl_run_source, create_run, execute_build, fetch_run_source
from assemblage.recipes.models import Recipe
from assemblage.storage.local import LocalStore

__all__ = ["Dataset", "execute_run", "find_run", "open_dataset", "open_existing_dataset", "run_recipe", "Progress"]

DATASET_FILE = "dataset.sqlite"
CANCEL_POLL = 1.0  # seconds between two looks at the run's row (is it cancelled?)


@dataclass(frozen=True)
class Dataset:
    root: Path
    context: Context

    @property
    def db_path(self) -> Path:
        return self.root / DATASET_FILE


def open_dataset(out: Path, *, work_root: Path | None = None) -> Dataset:
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    engine = make_engine(sqlite_url(out / DATASET_FILE))
    prepare_dataset(engine)  # a new dataset, or an older one brought to this schema
    ctx = Context(
        sessions=make_sessionmaker(engine),
        store=LocalStore(out),
        cache_dir=out / "sources",
        work_root=work_root,
    )
    return Dataset(root=out, context=ctx)


def open_existing_dataset(folder: Path) -> Dataset:
    """A dataset an earlier ``assemblage build --out FOLDER`` made (never creates one)."""
    from assemblage.errors import StorageError

    folder = Path(folder)
    if not (folder / DATASET_FILE).is_file():
        raise StorageError(f"{folder}: no {DATASET_FILE} here (make one with: assemblage build RECIPE --out {folder})")
    return open_dataset(folder)


def find_run(s, run_id: int | None) -> int:
    """``run_id`` when the dataset has it, else the latest run; a :class:`LookupError`-free error otherwise."""
    from sqlalchemy import func

    from assemblage.errors import AssemblageError

    if run_id is None:
        latest = s.scalar(select(func.max(m.Run.id)))
        if latest is None:
            raise AssemblageError("the dataset has no run yet")
        return latest
    if s.get(m.Run, run_id) is None:
        known = list(s.scalars(select(m.Run.id).order_by(m.Run.id)))
        raise AssemblageError(f"no run {run_id} in the dataset (runs: {', '.join(map(str, known)) or 'none'})")
    return run_id


class Progress:
    """What the orchestrator reports; the CLI draws it with Rich, tests may count it."""

    def start(self, total: int) -> None: ...

    def grow(self, more: int) -> None:
        """More builds than ``start`` said (a crawl added sources)."""

    def advance(self, status: str, label: str) -> None: ...

    def stop(self) -> None: ...


def run_recipe(
    dataset: Dataset,
    recipe: Recipe,
    text: str,
    base: Path,
    *,
    jobs: int = 2,
    progress: Progress | None = None,
    on_run: Callable[[int], None] | None = None,
) -> int:
    """Run a whole recipe into the dataset; returns the run id."""
    run_id = create_run(dataset.context, recipe, text, base)
    if on_run:
        on_run(run_id)
    execute_run(dataset, run_id, jobs=jobs, progress=progress)
    return run_id


def execute_run(dataset: Dataset, run_id: int, *, jobs: int = 2, progress: Progress | None = None) -> None:
    """Fetch (or crawl) the sources and run the builds of a run whose rows exist (a recipe's, or a rebuild's).

    Ctrl-C interrupts the run (:func:`~assemblage.pipeline.states.interrupt_run`); a cancel from another
    process (``assemblage cancel``) stops it within a second: the builds under way are killed, none starts.
    """
    ctx = dataset.context
    progress = progress or Progress()
    states.start_run(ctx.sessions, run_id)
    with ctx.sessions() as s:
        source_ids = list(s.scalars(select(m.Source.id).where(m.Source.run_id == run_id).order_by(m.Source.position)))
        crawl_ids = list(s.scalars(select(m.Crawl.id).where(m.Crawl.run_id == run_id).order_by(m.Crawl.id)))
    builds_by_source = _builds_by_source(ctx, run_id)
    allow_builds()
    total = sum(len(v) for v in builds_by_source.values())
    progress.start(total)
    lock = threading.Lock()
    labels = _labels(ctx, run_id)

    def build(bid: int) -> None:
        try:
            status = states.take_build(ctx.sessions, bid, ctx.worker)  # its claim; else how it ended
            if status == "running":
                status = execute_build(ctx, bid)
        except Exception as exc:  # noqa: BLE001 - a bug or a dead disk must not take the other builds down
            status = states.record_internal_error(ctx.sessions, bid, exc)
        with lock:
            progress.advance(status, labels.get(bid, ""))

    def crawl(cid: int) -> list[int]:
        from assemblage.pipeline.crawl import GithubUnavailable, RateLimited, fail_crawl
        from assemblage.settings import load_settings

        try:  # embedded: wait out rate limits of up to an hour here, rather than fail the search
            return crawl_run_source(ctx, cid, load_settings(), max_wait=3600)
        except (RateLimited, GithubUnavailable) as exc:
            fail_crawl(ctx.sessions, cid, str(exc))
            return complete_crawl(ctx, cid)

    # Fetches and crawls have their own threads, so that the first builds start as soon as their source is
    # there while the other sources are still coming in (in one queue every fetch went before every build).
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="asm")
    fetch_pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, 4)), thread_name_prefix="asm-fetch")
    cancelled = threading.Event()

    def stop_pools() -> None:  # no fetch or build starts any more; those under way end (killed, or at once)
        for p in (fetch_pool, pool):
            p.shutdown(wait=False, cancel_futures=True)

    try:
        # the run's row, every second: a cancel kills the builds under way (kill_all_builds); the loop stops the pools
        with CancelWatch(ctx.sessions, run_id=run_id, interval=CANCEL_POLL, on_cancel=cancelled.set):
            pending: set[Future] = set()
            fetches = {fetch_pool.submit(fetch_run_source, ctx, sid): sid for sid in source_ids}
            crawls = {fetch_pool.submit(crawl, cid): cid for cid in crawl_ids}
            pending |= set(fetches) | set(crawls)
            while pending:
                done, pending = wait(pending, timeout=CANCEL_POLL, return_when=FIRST_COMPLETED)
                if cancelled.is_set():  # here, not in the watch's thread: this loop alone submits
                    stop_pools()
                    pending = {f for f in pending if not f.cancelled()}  # wait() never reports these done
                for fut in done:
                    if fut.cancelled():
                        continue
                    result = fut.result()  # re-raise programming errors; expected failures are recorded by the steps
                    if cancelled.is_set():
                        continue
                    if fut in crawls:  # the repositories it accepted are sources now: fetch them
                        new = _builds_by_source(ctx, run_id, result)
                        builds_by_source.update(new)
                        labels.update(_labels(ctx, run_id))
                        with lock:
                            progress.grow(sum(len(v) for v in new.values()))
                        for sid in result:
                            f = fetch_pool.submit(fetch_run_source, ctx, sid)
                            fetches[f] = sid
                            pending.add(f)
                        continue
                    sid = fetches.get(fut)
                    if sid is not None:
                        for bid in builds_by_source.get(sid, []):
                            pending.add(pool.submit(build, bid))
    except KeyboardInterrupt:
        # Ctrl-C: stop at once, kill the builds under way, and say so in the dataset
        stop_pools()
        kill_all_builds()
        for p in (fetch_pool, pool):
            p.shutdown(wait=True)
        progress.stop()
        states.interrupt_run(ctx.sessions, run_id)
        raise
    fetch_pool.shutdown(wait=True)
    pool.shutdown(wait=True)
    progress.stop()
    states.finish_run(ctx.sessions, run_id)  # a cancelled run stays cancelled


def _builds_by_source(ctx: Context, run_id: int, source_ids: list[int] | None = None) -> dict[int, list[int]]:
    """Each source's builds, the likely longest first (see :func:`longest_first`)."""
    with ctx.sessions() as s:
        q = (
            select(m.Build.id, m.Build.source_id, m.Configuration.opt)
            .join(m.Configuration, m.Build.configuration_id == m.Configuration.id)
            .where(m.Build.run_id == run_id)
        )
        if source_ids is not None:
            q = q.where(m.Build.source_id.in_(source_ids))
        rows = sorted(s.execute(q.order_by(m.Build.id)), key=lambda r: longest_first(r.opt))
        out: dict[int, list[int]] = {}
        for bid, sid, _ in rows:
            out.setdefault(sid, []).append(bid)
        return out


# How long a build at each level takes, roughly, relative to the others (compile time grows with the level).
_LEVEL_COST = {"O3": 4, "Ofast": 4, "O2": 3, "Ox": 3, "Os": 2, "Oz": 2, "O1": 2, "Og": 1, "O0": 0, "Od": 0}


def longest_first(opt: str | None) -> int:
    """Sort key that starts a source's optimised builds before its -O0 ones.

    The pool takes builds in order, so the last to start decide when the run ends: with the
    short builds last, the jobs end close together (lz4 and bzip2, 12 builds on 2 jobs: the
    last -O2 build started last and ran 6 s alone).
    """
    return -_LEVEL_COST.get(opt or "", 1)


def _labels(ctx: Context, run_id: int) -> dict[int, str]:
    with ctx.sessions() as s:
        rows = s.execute(
            select(m.Build.id, m.Source.name, m.Configuration.identifier)
            .join(m.Source, m.Build.source_id == m.Source.id)
            .join(m.Configuration, m.Build.configuration_id == m.Configuration.id)
            .where(m.Build.run_id == run_id)
        ).all()
    return {bid: f"{name} {cfg}" for bid, name, cfg in rows}
