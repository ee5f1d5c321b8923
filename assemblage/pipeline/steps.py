"""The pipeline's steps as plain functions of IDs.

The embedded mode calls them from a thread pool; the service wraps them in
Celery tasks. Each step re-reads its rows, is safe to run again (a finished
build returns at once; binaries are written in the same transaction as the
final status, so a killed attempt leaves nothing behind), and never holds a
database transaction open while compiling.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from assemblage.binaries._gc import paused_gc
from assemblage.builds.engine import BuildOutcome, BuildRequest, run_build
from assemblage.db import models as m
from assemblage.db.session import copy_rows, is_postgres, reserve_ids, session_scope
from assemblage.errors import AssemblageError, InvalidBinaryError, RecipeError, SourceError
from assemblage.pipeline.context import Context
from assemblage.pipeline.failures import sources_counted, too_many_builds, unexpected_fetch_error
from assemblage.pipeline.plan import RunPlan
from assemblage.pipeline.reuse import build_key, reusable, toolchain_identity
from assemblage.pipeline.states import IllegalTransition, fail_source, finish_build, skip_build, source_fetched
from assemblage.recipes.matrix import Config, expand_matrix
from assemblage.recipes.models import GithubSource, Recipe
from assemblage.storage.base import sha256_file
from assemblage.urls import redact

__all__ = [
    "Context",
    "create_run",
    "expand_run",
    "complete_crawl",
    "crawl_run_source",
    "fetch_run_source",
    "execute_build",
    "build_key",
]

log = logging.getLogger(__name__)


def _utcnow():
    return m.utcnow()


# ---------------------------------------------------------------- runs


def create_run(
    ctx: Context, recipe: Recipe, text: str, base: Path, *, expand: bool = True, submitted_by: int | None = None
) -> int:
    """Record the recipe and the run; with ``expand`` also its sources and builds (see :func:`expand_run`).

    The service records the run at once (``expand=False``) and expands it in a task, since
    discovering sources (a GitHub search) may take a while.
    """
    configs, notes = expand_matrix(recipe)
    with session_scope(ctx.sessions) as s:
        rec = m.Recipe(
            name=recipe.name,
            description=recipe.description,
            text=text,
            sha256=hashlib.sha256(text.encode()).hexdigest(),
        )
        s.add(rec)
        s.flush()
        run = m.Run(
            recipe_id=rec.id,
            status="pending",
            notes=notes,
            submitted_by=submitted_by,
            options=RunPlan.of_recipe(recipe, configs, base).stored(),
        )
        s.add(run)
        s.flush()
        run_id = run.id
    if expand:
        expand_run(ctx, run_id, recipe)
    return run_id


def expand_run(ctx: Context, run_id: int, recipe: Recipe | None = None) -> bool:
    """Add the run's sources and one pending build per source x configuration. Idempotent.

    A ``github`` source becomes a crawl (``pipeline/crawl.py``) whose repositories are
    added to the run as sources when it finishes (:func:`complete_crawl`).
    Returns False when the run is gone or was already expanded.
    """
    from assemblage.pipeline.crawl import create_crawl
    from assemblage.recipes.load import parse_recipe_text
    from assemblage.sources import kind_of

    with session_scope(ctx.sessions) as s:
        run = s.get(m.Run, run_id, with_for_update=True)
        if run is None or run.expanded:
            return False
        recipe = recipe or parse_recipe_text(run.recipe.text)
        configs = _run_configs(s, run)
        if ctx.max_builds is not None:  # the API checked; a recipe edited in the database was not
            count = sum(sources_counted(spec) for spec in recipe.sources)
            if count * len(configs) > ctx.max_builds:
                raise RecipeError([too_many_builds(count, len(configs), ctx.max_builds)])
        selectors = []
        for pos, spec in enumerate(recipe.sources):
            expands = kind_of(spec).expands(spec)
            if expands == "crawl":
                assert isinstance(spec, GithubSource)  # the one kind that expands by crawling
                create_crawl(s, spec, run_id=run.id, position=pos)
            elif expands == "debian-selection":
                selectors.append((pos, spec))  # after the others: it adds many
            else:
                _add_source(s, run, pos, spec, list(recipe.matrix.flags), configs=configs)
        for pos, spec in selectors:
            _add_debian_selection(ctx, s, run, pos, spec, list(recipe.matrix.flags), configs)
        run.expanded = True
        return True


def _add_debian_selection(
    ctx: Context, s: Session, run: m.Run, position: int, spec, flags: list[str], configs: list[m.Configuration]
) -> None:
    """[h8-debian-deps] The packages a ``debian:`` selector picks, each a source of the run.

    A selector that cannot run (no apt lists, no mirror) stays as one failed source at its position.
    """
    from assemblage.sources.debian_select import expand_debian

    try:
        found = expand_debian(spec, cache=ctx.cache_dir)
    except AssemblageError as exc:
        _add_source(s, run, position, spec, flags, error=str(exc), configs=configs)
        return
    for n, package in enumerate(found):  # the first takes the selector's place, the others the next free ones
        last = s.scalar(select(func.max(m.Source.position)).where(m.Source.run_id == run.id))
        _add_source(s, run, position if n == 0 else max(last or 0, position) + 1, package, flags, configs=configs)


def _run_configs(s: Session, run: m.Run) -> list[m.Configuration]:
    """The run's configurations, as :func:`create_run` expanded them."""
    return [_config_row(s, Config.parse(c)) for c in RunPlan.of(run).configs]


def _add_source(
    s: Session,
    run: m.Run,
    position: int,
    spec,
    flags: list[str],
    *,
    error: str | None = None,
    configs: list[m.Configuration] | None = None,
) -> m.Source:
    """One source of the run and its pending builds (skipped at once when ``error`` says it cannot be had)."""
    from assemblage.sources import source_label, source_name

    src = m.Source(
        run_id=run.id,
        position=position,
        spec=spec.model_dump(mode="json", exclude_none=True),
        label=source_label(spec),
        kind=spec.kind,
        name=source_name(spec),
    )
    if error:
        error = redact(error)
        src.status, src.error = "failed", error
    s.add(src)
    s.flush()
    for cfg in configs if configs is not None else _run_configs(s, run):
        b = m.Build(run_id=run.id, source_id=src.id, configuration_id=cfg.id, flags_requested=list(flags))
        if error:
            b.status, b.reason, b.message, b.finished_at = "skipped", "source_unavailable", error[:2000], _utcnow()
        s.add(b)
    return src


def complete_crawl(ctx: Context, crawl_id: int) -> list[int]:
    """A finished crawl's repositories become sources of its run (a failed one, one failed source). Idempotent.

    Returns the ids of the sources added now (to be fetched).
    """
    from assemblage.pipeline.crawl import accepted_sources

    with session_scope(ctx.sessions) as s:
        crawl = s.get(m.Crawl, crawl_id, with_for_update=True)
        if crawl is None or crawl.run_id is None or crawl.status not in ("finished", "failed"):
            return []
        run = s.get_one(m.Run, crawl.run_id)
        if run.status == "cancelled":
            return []
        flags = list(parse_recipe_flags(run))
        configs = _run_configs(s, run)
        next_pos = lambda: (s.scalar(select(func.max(m.Source.position)).where(m.Source.run_id == run.id)) or 0) + 1  # noqa: E731
        added = []
        if crawl.status == "failed":
            if not s.scalar(
                select(m.Source.id).where(
                    m.Source.run_id == run.id,
                    m.Source.kind == "github",
                    m.Source.label == f"github:{crawl.spec['github']['query']}",
                )
            ):
                _add_source(
                    s,
                    run,
                    next_pos(),
                    GithubSource.model_validate(crawl.spec),
                    flags,
                    error=crawl.error or "the GitHub crawl failed",
                    configs=configs,
                )
            return []
        for repo, spec in accepted_sources(s, crawl_id):
            if repo.source_id is not None:
                continue
            src = _add_source(s, run, next_pos(), spec, flags, configs=configs)
            repo.source_id = src.id
            added.append(src.id)
        if not added and crawl.accepted == 0:
            note = f"github:{crawl.spec['github']['query']}: the crawl accepted no repository"
            if note not in (run.notes or []):
                run.notes = [*(run.notes or []), note]
        return added


def crawl_run_source(
    ctx: Context, crawl_id: int, settings, *, transport=None, max_wait: float | None = None
) -> list[int]:
    """Run a crawl to its end in this process and add what it found to its run; returns the new source ids.

    :class:`~assemblage.sources.github.RateLimited` and ``GithubUnavailable`` propagate (the
    crawl is resumable: retry later); any other failure fails the crawl, never the run.
    """
    from assemblage.pipeline.crawl import GithubUnavailable, RateLimited, fail_crawl, make_client, run_crawl

    try:
        with make_client(settings, ctx.sessions, transport=transport, max_wait=max_wait) as client:
            run_crawl(ctx.sessions, crawl_id, client)
    except (RateLimited, GithubUnavailable):
        raise
    except AssemblageError as exc:  # no token, every token refused, a rejected query
        fail_crawl(ctx.sessions, crawl_id, str(exc))
    return complete_crawl(ctx, crawl_id)


def parse_recipe_flags(run: m.Run) -> list[str]:
    return list(RunPlan.of(run).flags)


def _config_row(s: Session, c: Config) -> m.Configuration:
    row = s.scalar(select(m.Configuration).where(m.Configuration.identifier == c.id))
    if row is None:
        row = m.Configuration(identifier=c.id, platform=c.platform, arch=c.arch, toolchain=c.toolchain, opt=c.opt)
        s.add(row)
        s.flush()
    return row


def _spec_of(source: m.Source, *, pinned: bool = False):
    return _spec_of_doc(source.pinned_spec if pinned and source.pinned_spec else source.spec)


def _spec_of_doc(doc: dict[str, Any]):
    """A source spec as stored; a row that no longer validates (edited, or from an older version) is a SourceError."""
    from pydantic import TypeAdapter, ValidationError

    from assemblage.recipes.load import format_location
    from assemblage.recipes.models import SourceSpec

    try:
        return TypeAdapter(SourceSpec).validate_python(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{format_location(e['loc']) or 'source'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        )
        raise SourceError(f"the stored source does not validate: {problems}") from None


def fetch_run_source(ctx: Context, source_id: int) -> bool:
    """Fetch and pin one source. On failure, its builds become ``skipped`` with the reason.

    One bad source never stalls a run: whatever goes wrong while fetching (a
    :class:`SourceError`, a spec edited in the database that no longer validates,
    an exception a library let through) fails this source, with a reason, and
    skips its builds. Only database trouble outside the fetch propagates (the
    task retries it). Unexpected exceptions are logged with their traceback.
    """
    from assemblage.builds.reproducible import source_date_epoch
    from assemblage.sources import fetch_source, pin_spec, source_pin

    with session_scope(ctx.sessions) as s:
        src = s.get(m.Source, source_id)
        if src is None:
            return False
        if src.status == "fetched" and src.checkout and Path(src.checkout).exists():
            return True
        if src.status == "failed":
            return False
        run = s.get_one(m.Run, src.run_id)
        base = ctx.source_root or Path(RunPlan.of(run).base)
        doc = dict(src.pinned_spec or src.spec)  # a rebuild's sources, or a refetch, use what was pinned
    try:
        spec = _spec_of_doc(doc)
        fetched = fetch_source(spec, base=base, cache=ctx.cache_dir, policy=ctx.fetch_policy)
    except AssemblageError as exc:
        fail_source(ctx.sessions, source_id, str(exc))
        return False
    except Exception as exc:  # noqa: BLE001 - a library's exception must fail the source, not the run
        fail_source(ctx.sessions, source_id, unexpected_fetch_error(source_id, exc))
        return False
    with session_scope(ctx.sessions) as s:
        src = s.get(m.Source, source_id, with_for_update=True)
        if src is None or not source_fetched(src):
            return False  # its run was cancelled while it was fetched
        src.name = fetched.name
        src.commit, src.version, src.sha256 = fetched.commit, fetched.version, fetched.sha256
        src.license, src.url, src.last_update = fetched.license, fetched.url, fetched.last_update
        src.checkout = str(fetched.path)
        src.pin = source_pin(fetched)
        src.pinned_spec = pin_spec(spec, fetched).model_dump(mode="json", exclude_none=True)
        if src.source_date_epoch is None:  # a rebuild sets the lock's
            src.source_date_epoch = source_date_epoch(fetched.kind, fetched.last_update)
    return True


# ---------------------------------------------------------------- builds


def execute_build(ctx: Context, build_id: int) -> str:
    """Build, analyse and store one source x configuration. Returns the final status."""
    with session_scope(ctx.sessions) as s:
        b = s.get(m.Build, build_id)
        if b is None:
            return "missing"
        if b.status in m.FINAL_STATUSES:
            return b.status  # cancelled after its claim, or a copy of the message found it done
        if b.status != "running":
            raise IllegalTransition("build", b.id, "be built before it is claimed", b.status, ["running"])
        src, cfg, run = b.source, b.configuration, b.run
        if src.status != "fetched":
            skip_build(b, "source_unavailable", src.error or "the source was not fetched")
            return b.status
        plan = RunPlan.of(run)
        key = build_key(
            label=src.label,
            pin=src.pin,
            config=cfg.identifier,
            flags=b.flags_requested,
            options=plan,
            source_date_epoch=src.source_date_epoch,
            toolchain=toolchain_identity(cfg.identifier, b.flags_requested, plan.build),
        )
        b.key = key
        earlier = reusable(s, key, b.id)
        if earlier is not None:
            origin = earlier.reused_from_id or earlier.id
            finish_build(b, earlier.status, earlier.reason, earlier.message)
            for attr in (
                "build_system",
                "duration",
                "log_key",
                "sandboxed",
                "runner",
                "opt_mismatches",
                "analysis_duration",
                "environment",
                "dependencies",
                "dependency_image",
                "dependency_image_digest",
            ):
                setattr(b, attr, getattr(earlier, attr))
            b.reused_from_id = origin
            return b.status
        try:
            checkout = _ensure_checkout(ctx, src, ctx.source_root or Path(plan.base))
        except AssemblageError as exc:
            skip_build(b, "source_unavailable", str(exc))
            return b.status
        request = BuildRequest(
            source_dir=checkout,
            config=Config.parse(cfg.identifier),
            flags=tuple(b.flags_requested),
            limits=plan.limits(),
            kinds=plan.kinds(),
            jobs=plan.build.jobs_per_build,
            work_root=ctx.work_root,
            runner=plan.build.runner,
            image=plan.build.image,
            source_date_epoch=src.source_date_epoch,
            source_kind=src.kind,
            max_binaries=ctx.max_binaries,
        )
        want_stripped = plan.outputs.stripped
        source_info = _source_info(src)
        config = Config.parse(cfg.identifier)

    with tempfile.TemporaryDirectory(prefix="asm-log-") as tmp:
        log_path = Path(tmp) / "build.log"
        outcome = run_build(request, log_path)
        try:
            t0 = time.monotonic()
            tree = _source_tree(checkout, outcome.source_view)
            records = _analyse_and_store(ctx, outcome, config, want_stripped, log_path, tree)
            analysis_duration = time.monotonic() - t0
            log_key = f"logs/build-{build_id}.log"
            ctx.store.store(log_key, log_path, meta={"content-type": "text/plain"})
        finally:
            outcome.cleanup()

    with session_scope(ctx.sessions) as s:
        b = s.get(m.Build, build_id, with_for_update=True)  # a cancel committing now waits, or is seen
        if b is None:
            return "missing"
        if not finish_build(b, outcome.status, outcome.reason, outcome.message):
            return b.status  # cancelled meanwhile, or another attempt finished first: nothing is written
        b.build_system, b.duration = outcome.build_system, outcome.duration
        b.sandboxed = outcome.sandboxed if outcome.sandbox is not None else None  # None: no step ran
        b.runner, b.log_key, b.analysis_duration = request.runner, log_key, analysis_duration
        b.dependencies = list(outcome.dependencies)  # [h8-debian-deps]
        b.dependency_image, b.dependency_image_digest = outcome.dependency_image, outcome.dependency_image_digest
        b.environment = outcome.environment.model_dump(mode="json") if outcome.environment else None
        b.opt_mismatches = _write_binaries(s, b, records, config, source_info)
        b.finished_at = _utcnow()  # after the rows are written: the timeline shows their cost in the build
    return outcome.status


_TEXT_CACHES: dict[str, dict] = {}  # checkout -> its lexed files (sources.text.SourceTree's shared cache)
_TEXT_CACHES_KEPT = 2  # a run builds its sources one after another; bounded memory in long-lived workers
_text_lock = threading.Lock()


def _source_tree(checkout: Path, view: str | None):
    """The checkout as this build saw it, for cutting the source text of its functions.

    The builds of one source under every configuration share its lexed files (the last two
    checkouts' are kept): each build lexing them again cost about as much as the analysis's
    line tables (lz4 and bzip2, 12 builds: 1.1 s of CPU, 0.2 s shared).
    """
    import os

    from assemblage.sources.text import SourceTree

    if view is None:
        return None
    with _text_lock:
        shared = _TEXT_CACHES.pop(str(checkout), None)
        if shared is None:
            shared = {}
        _TEXT_CACHES[str(checkout)] = shared  # the most recent last
        while len(_TEXT_CACHES) > _TEXT_CACHES_KEPT:
            del _TEXT_CACHES[next(iter(_TEXT_CACHES))]
    return SourceTree(checkout, [view, os.path.realpath(view)], shared=shared)


def _ensure_checkout(ctx: Context, src: m.Source, base: Path) -> Path:
    """The source's tree on this machine: the recorded checkout, or a fetch pinned to the recorded commit.

    In the service, the worker that builds is not always the one that fetched. A
    recorded checkout is used only where a fetch could have put it (this worker's
    cache, or inside the source root), so a ``checkout`` column edited in the
    database does not make a build copy another folder. Raises :class:`SourceError`.
    """
    if src.checkout and Path(src.checkout).is_dir() and _may_use(ctx, Path(src.checkout)):
        return Path(src.checkout)
    from assemblage.sources import fetch_source

    try:
        spec = _spec_of(src, pinned=True)
        fetched = fetch_source(spec, base=base, cache=ctx.cache_dir, policy=ctx.fetch_policy)
    except AssemblageError:
        raise
    except Exception as exc:  # noqa: BLE001 - as in fetch_run_source: the source fails, not the worker
        raise SourceError(unexpected_fetch_error(src.id, exc)) from None
    pin = fetched.commit or fetched.sha256
    if src.pin and pin and not src.pin.startswith("tree:") and pin != src.pin:
        raise SourceError(f"{src.label}: fetched {pin}, but the run pinned {src.pin}")
    return fetched.path


def _may_use(ctx: Context, checkout: Path) -> bool:
    root = ctx.fetch_policy.source_root
    if root is None:
        return True
    real = checkout.resolve()
    return real.is_relative_to(Path(ctx.cache_dir).resolve()) or real.is_relative_to(root.resolve())


def _source_info(src: m.Source) -> dict[str, Any]:
    return {
        "label": src.label,
        "kind": src.kind,
        "license": src.license,
        "url": src.url,
        "commit": src.commit,
        "last_update": src.last_update,
        "version": src.version,
    }


@dataclass
class _Stored:
    relpath: str
    sha256: str
    key: str
    size: int
    kind: str
    format: str
    analysis: Any = None  # BinaryAnalysis or None
    error: str | None = None
    stripped: tuple[str, str] | None = None  # (sha256, key)
    pdb: tuple[str, str, str] | None = None  # (sha256, key, local name)
    texts: list[Any] | None = None  # per function: (source_codes, top_comments, [text of each line row])


def _analyse_and_store(
    ctx: Context, outcome: BuildOutcome, config: Config, want_stripped: bool, log_path: Path, tree=None
) -> list[_Stored]:
    """Store each binary, analyse it, and cut its functions' source text from the checkout (``tree``).

    ``tree`` reads each source file once for all the binaries of the build. A file the build left twice
    (``lz4`` and ``programs/lz4``) is analysed once: the copy takes the first one's analysis, source text
    and stripped copy (same bytes and same PDB, so the same results).
    """
    from assemblage.binaries import analyze_file_bounded

    records = []
    done: dict[tuple[str, str | None], _Stored] = {}
    with open(log_path, "a", encoding="utf-8") as log:
        for found in outcome.binaries:
            digest = sha256_file(found.path)
            _, key = ctx.store.store_blob(found.path, sha256=digest)
            rec = _Stored(
                relpath=found.relpath,
                sha256=digest,
                key=key,
                size=found.path.stat().st_size,
                kind=found.kind,
                format=found.format,
            )
            pdb = outcome.pdbs.get(found.relpath)
            if pdb is not None:
                pdb_sha, pdb_key = ctx.store.store_blob(pdb)
                rec.pdb = (pdb_sha, pdb_key, pdb.name)
            same = done.get((digest, rec.pdb[0] if rec.pdb else None))
            if same is not None:
                rec.analysis, rec.error, rec.texts, rec.stripped = same.analysis, same.error, same.texts, same.stripped
                log.write(f"# {found.relpath}: the same bytes as {same.relpath}, analysed once\n")
                records.append(rec)
                continue
            done[(digest, rec.pdb[0] if rec.pdb else None)] = rec
            if found.format in ("elf", "pe"):
                try:
                    rec.analysis = analyze_file_bounded(
                        found.path, pdb=pdb, timeout=ctx.analysis_timeout, memory=ctx.analysis_memory
                    )
                except InvalidBinaryError as exc:
                    rec.error = exc.problem
                    log.write(f"! analysis of {found.relpath} failed: {exc.problem}\n")
                if rec.analysis is not None and tree is not None:
                    with paused_gc():  # tens of thousands of strings, no cycles (see binaries/_gc.py)
                        rec.texts = tree.cut_functions(rec.analysis.functions)
            if want_stripped and found.format in ("elf", "pe"):
                rec.stripped = _stripped_copy(ctx, found.path, outcome.strip_tool, log)
            records.append(rec)
    return records


def _stripped_copy(ctx: Context, path: Path, strip_tool: str | None, log) -> tuple[str, str] | None:
    tool = next((t for t in (strip_tool, "llvm-strip-19", "llvm-strip", "strip") if t and shutil.which(t)), None)
    if tool is None:
        log.write(f"! no strip tool: no stripped copy of {path.name}\n")
        return None
    from assemblage.binaries import strip_file_bounded

    with tempfile.TemporaryDirectory(prefix="asm-strip-") as tmp:
        out = Path(tmp) / path.name
        try:  # the binary is the repository's: the tool runs under the analysis limits
            strip_file_bounded(tool, path, out, timeout=ctx.analysis_timeout, memory=ctx.analysis_memory)
        except InvalidBinaryError as exc:
            log.write(f"! no stripped copy of {path.name}: {exc.problem}\n")
            return None
        return ctx.store.store_blob(out)


def _write_binaries(s: Session, b: m.Build, records: list[_Stored], config: Config, info: dict[str, Any]) -> int:
    """Insert binaries and their ground truth in the caller's transaction. Returns opt mismatches."""
    mismatches = 0
    for rec in records:
        a = rec.analysis
        observed = getattr(a, "observed_opt", None)
        mismatch = bool(observed) and observed != config.opt
        mismatches += mismatch
        producer = a.producers[0] if a is not None and a.producers else None
        row = m.Binary(
            file_name=Path(rec.relpath).name,
            path=rec.key,
            platform=config.platform,
            build_mode="Debug" if config.opt in ("O0", "Od") else "Release",
            toolset_version=(
                f"{producer.compiler} {producer.version}" if producer and producer.version else config.toolchain
            ),
            github_url=info["url"],
            optimization=config.opt,
            hash=rec.sha256,
            size=rec.size,
            license=info["license"],
            repo_commit_hash=info["commit"],
            repo_last_update=int(info["last_update"].timestamp()) if info["last_update"] else None,
            repo_last_update_at=info["last_update"],
            build_id=b.id,
            run_id=b.run_id,
            source=info["label"],
            source_kind=info["kind"],
            source_version=info["version"],
            arch=a.arch if a is not None else config.arch,
            format=rec.format,
            bits=getattr(a, "bits", None),
            kind=rec.kind,
            toolchain=config.toolchain,
            config=config.id,
            relpath=rec.relpath,
            flags_requested=list(b.flags_requested),
            flags_observed=list(a.observed_flags) if a is not None else None,
            opt_observed=observed,
            opt_mismatch=mismatch,
            producer=producer.raw if producer else None,
            elf_build_id=getattr(a, "build_id", None),
            text_sha256=getattr(a, "text_sha256", None),
            stripped_hash=rec.stripped[0] if rec.stripped else None,
            stripped_path=rec.stripped[1] if rec.stripped else None,
            function_count=len(a.functions) if a is not None else 0,
            analysis_error=rec.error,
            notes={"disagreements": [asdict(d) for d in a.disagreements[:1000]]} if a is not None else {},
        )
        s.add(row)
        s.flush()
        if rec.pdb:
            # the PDB path the PE names (its CodeView record), not where the analysis found the file: that is a
            # scratch folder, different on every build of the same bytes
            codeview = (a.extra.get("codeview_path") or a.pdb_path) if a is not None else None
            s.add(
                m.Pdb(
                    binary_id=row.id,
                    pdb_path=rec.pdb[1],
                    hash=rec.pdb[0],
                    guid=getattr(a, "pdb_guid", None),
                    age=getattr(a, "pdb_age", None),
                    codeview_path=codeview,
                )
            )
        if a is not None:
            insert_ground_truth(s, row.id, a, rec.texts)
    return mismatches


_NO_TEXT = (None, None, ())


def insert_ground_truth(s: Session, binary_id: int, a, texts: list[Any] | None = None) -> None:
    """Bulk-insert functions, their ranges, lines and inlining facts of one binary.

    ``texts`` holds, per function, its ``source_codes``, ``top_comments`` and the text of each
    of its line rows (see ``SourceTree.cut_functions``); None when no checkout was at hand.
    """
    funcs = a.functions
    texts = texts if texts is not None else [_NO_TEXT] * len(funcs)
    with paused_gc():  # a row tuple per line: the collector would rescan the whole heap several times
        if funcs and is_postgres(s):
            _copy_ground_truth(s, binary_id, funcs, texts)
        elif funcs:
            _insert_ground_truth_core(s, binary_id, funcs, texts)
    if a.inlinings:
        _executemany(
            s.connection(),
            m.Inline.__table__,
            ["binary_id", "callee", "caller", "start", "end", "call_file", "call_line"],
            [
                (binary_id, i.callee, i.caller, r.start, r.end, i.call_file, i.call_line)
                for i in a.inlinings
                for r in i.ranges
            ],
        )


def _insert_ground_truth_core(s: Session, binary_id: int, funcs, texts: list[Any]) -> None:
    """SQLite: functions through Core (for their ids), ranges and lines as the driver's own executemany.

    Not through the ORM's bulk insert (``s.execute(insert(Model), rows)``), which builds state and
    parameters per row in Python: for a binary with 22,000 line rows that took ~1.6 s against ~0.4 s
    here, inside the transaction that every other build's first and last step wait for.
    """
    conn = s.connection()
    rows = [
        {
            "binary_id": binary_id,
            "name": f.name,
            "hash": f.sha256,
            "source_file": f.source_file,
            "prototype": f.prototype,
            "top_comments": t[1],
            "source_codes": t[0],
            "linkage_name": f.linkage_name,
            "demangled": f.demangled,
            "start": f.start,
            "end": f.end,
            "size": f.size,
            "decl_line": f.decl_line,
            "compilation_unit": f.compilation_unit,
            "is_static": f.is_static,
            "label_source": f.label_source,
            "pic_hash": f.pic_hash,
            "size_inferred": f.size_inferred,
        }
        for f, t in zip(funcs, texts, strict=True)
    ]
    table = m.Function.__table__
    ids = list(conn.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), rows).scalars())
    rvas = [
        (fid, r.start, r.end) for fid, f in zip(ids, funcs) for r in (f.ranges or [f])
    ]  # a function without ranges is its own one range
    lines = [
        (fid, ln.line, ln.address, ln.length, ln.source_file, text)
        for fid, f, t in zip(ids, funcs, texts)
        for ln, text in zip(f.lines, t[2] or (None,) * len(f.lines))
    ]
    _executemany(conn, m.Rva.__table__, ["function_id", "start", "end"], rvas)
    _executemany(
        conn, m.Line.__table__, ["function_id", "line_number", "rva", "length", "source_file", "source_code"], lines
    )


def _executemany(conn, table, columns: list[str], rows: list[tuple]) -> None:
    """Plain tuples straight to the driver (sqlite3's qmark style); Core's executemany elsewhere."""
    if not rows:
        return
    if conn.dialect.paramstyle != "qmark":
        conn.execute(table.insert(), [dict(zip(columns, r)) for r in rows])
        return
    names = ", ".join(f'"{c}"' for c in columns)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join("?" * len(columns))})'
    for i in range(0, len(rows), 50_000):
        conn.exec_driver_sql(sql, rows[i : i + 50_000])


_FUNCTION_COLUMNS = [
    "id",
    "binary_id",
    "name",
    "hash",
    "source_file",
    "prototype",
    "top_comments",
    "source_codes",
    "linkage_name",
    "demangled",
    "start",
    "end",
    "size",
    "decl_line",
    "compilation_unit",
    "is_static",
    "label_source",
    "pic_hash",
    "size_inferred",
]


def _copy_ground_truth(s: Session, binary_id: int, funcs, texts: list[Any]) -> None:
    """PostgreSQL: ids from the sequence, then COPY functions, ranges and lines (tens of thousands of rows)."""
    ids = _copy_functions(s, binary_id, funcs, texts)
    copy_rows(
        s,
        "rvas",
        ["function_id", "start", "end"],
        (
            row
            for fid, f in zip(ids, funcs)
            for row in ([(fid, r.start, r.end) for r in f.ranges] if f.ranges else [(fid, f.start, f.end)])
        ),
    )
    copy_rows(
        s,
        "lines",
        ["function_id", "line_number", "rva", "length", "source_file", "source_code"],
        (
            (fid, ln.line, ln.address, ln.length, ln.source_file, text)
            for fid, f, t in zip(ids, funcs, texts)
            for ln, text in zip(f.lines, t[2] or (None,) * len(f.lines))
        ),
    )


def _copy_functions(s: Session, binary_id: int, funcs, texts: list[Any] | None = None) -> list[int]:
    """PostgreSQL: COPY the ``functions`` rows of one binary with ids taken from the sequence; returns the ids."""
    ids = reserve_ids(s, "functions", len(funcs))
    texts = texts if texts is not None else [_NO_TEXT] * len(funcs)
    copy_rows(
        s,
        "functions",
        _FUNCTION_COLUMNS,
        (
            (
                fid,
                binary_id,
                f.name,
                f.sha256,
                f.source_file,
                f.prototype,
                t[1],
                t[0],
                f.linkage_name,
                f.demangled,
                f.start,
                f.end,
                f.size,
                f.decl_line,
                f.compilation_unit,
                f.is_static,
                f.label_source,
                f.pic_hash,
                f.size_inferred,
            )
            for fid, f, t in zip(ids, funcs, texts, strict=True)
        ),
    )
    return ids
