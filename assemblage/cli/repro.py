"""``assemblage lock``, ``assemblage rebuild`` and ``assemblage verify``: binaries that can be rebuilt bit for bit.

    assemblage lock DIR [--run N] [--out FILE]        the run's lock as JSON (the latest run by default)
    assemblage rebuild LOCK --out DIR [--allow-drift] the lock's builds, here, into a new dataset
    assemblage verify DIR [--run N] [--sample N] [--seed S] [--json]
                                                      rebuild a sample, compare every binary by sha256

``verify`` ends with ``N of M binaries bit-identical (P%)``; with ``--json``
it prints one object instead (``identical``, ``compared``, ``differences``...).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from assemblage.errors import LockError

__all__ = ["register"]

console = Console()
err = Console(stderr=True, soft_wrap=True)


def _dataset(folder: Path):
    from assemblage.pipeline.embedded import DATASET_FILE, open_existing_dataset

    if not (Path(folder) / DATASET_FILE).is_file():
        raise typer.BadParameter(
            f"{folder}: no dataset here (assemblage build RECIPE --out {folder} makes one)", param_hint="DIR"
        )
    return open_existing_dataset(folder)


def _run(dataset, run: int | None) -> int:
    from assemblage.pipeline.embedded import find_run

    with dataset.context.sessions() as s:
        return find_run(s, run)


def _lock_of(dataset, run: int | None):
    from assemblage.pipeline.lock import lock_for_run

    run_id = _run(dataset, run)
    with dataset.context.sessions() as s:
        return lock_for_run(s, run_id)


def lock(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A dataset folder (assemblage build --out)")],
    run: Annotated[int | None, typer.Option("--run", min=1, help="The run (default: the latest)")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the lock here instead of printing it")] = None,
) -> None:
    """Print the lock of a run: pinned sources, toolchains as probed, flags, environment, binaries' sha256."""
    from assemblage.pipeline.lock import lock_json

    text = lock_json(_lock_of(_dataset(folder), run))
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        err.print(f"wrote {out}", highlight=False)


def _read_lock(path: Path):
    from assemblage.pipeline.lock import parse_lock

    try:
        text = path.read_bytes()
    except OSError as exc:
        raise LockError(f"{path}: cannot read the lock: {exc.strerror}") from None
    return parse_lock(text, where=str(path))


def rebuild(
    lock_file: Annotated[Path, typer.Argument(metavar="LOCK", help="A lock (assemblage lock DIR > run.lock.json)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="A new dataset folder")],
    allow_drift: Annotated[
        bool,
        typer.Option(
            "--allow-drift",
            help="Rebuild even when a toolchain, image or source "
            "differs here; the differences are recorded in the new dataset",
        ),
    ] = False,
    base: Annotated[Path | None, typer.Option(help="Where the lock's relative source paths start")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Builds at once")] = max(1, os.cpu_count() or 1),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False,
) -> None:
    """Rebuild exactly what LOCK pins (its sources at their pins, its configurations) into a new dataset."""
    from assemblage.cli.progress import RichProgress, print_summary
    from assemblage.pipeline.rebuild import rebuild as do_rebuild
    from assemblage.pipeline.report import run_report

    locked = _read_lock(lock_file)
    started = time.monotonic()
    progress = RichProgress(console, enabled=not quiet and console.is_terminal)
    result = do_rebuild(locked, out, base=base, allow_drift=allow_drift, jobs=jobs, progress=progress)
    with result.dataset.context.sessions() as s:
        report = run_report(s, result.run_id)
    print_summary(console, report, result.dataset.db_path, time.monotonic() - started)
    for d in result.drift:
        console.print(f"[yellow]drift (allowed, recorded):[/] {d}", highlight=False, markup=True)


def verify(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A dataset folder")],
    run: Annotated[int | None, typer.Option("--run", min=1, help="The run (default: the latest)")] = None,
    sample: Annotated[
        int | None, typer.Option("--sample", min=1, help="Rebuild this many builds (default: all)")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of the summary")] = False,
    allow_drift: Annotated[
        bool,
        typer.Option(
            "--allow-drift",
            help="Verify even when a toolchain, image or source differs here (the differences are recorded)",
        ),
    ] = False,
    base: Annotated[Path | None, typer.Option(help="Where the lock's relative source paths start")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Builds at once")] = max(1, os.cpu_count() or 1),
    keep: Annotated[bool, typer.Option("--keep", help="Keep the scratch dataset of the rebuild")] = False,
) -> None:
    """Rebuild a seeded sample of a run's builds from its lock and compare every binary by sha256."""
    from assemblage.cli.progress import RichProgress
    from assemblage.pipeline.verify import verify_run

    dataset = _dataset(folder)
    progress = RichProgress(err, enabled=not as_json and err.is_terminal)
    report = verify_run(
        dataset,
        run_id=_run(dataset, run),
        sample=sample,
        seed=seed,
        jobs=jobs,
        allow_drift=allow_drift,
        progress=progress,
        base=base,
        keep=keep,
    )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    _print_report(report)


def _print_report(report) -> None:
    from assemblage.pipeline.verify import describe_cause

    what = f"all {report.builds}" if report.sample is None else f"a sample of {report.builds} (seed {report.seed})"
    console.print(
        f"verify run {report.run_id}: {what} build(s) rebuilt from the run's lock, "
        f"{report.compared} binaries compared (verification {report.verification_id})",
        highlight=False,
    )
    for d in report.drift:
        console.print(f"[yellow]drift (allowed):[/] {d}", highlight=False)
    for d in report.differences:
        head = f"[red]{d.status}[/] {d.kind} {d.relpath}  [dim]{d.source} {d.config}[/]"
        console.print(head, highlight=False)
        if d.message:
            console.print(f"    {d.message}", highlight=False, markup=False)
        for s in d.sections:
            detail = f": {s['detail']}" if s.get("detail") else ""
            console.print(f"    {s['name']}: {s['cause']}{detail}", highlight=False, markup=False)
        if d.causes:
            console.print(
                "    likely cause: " + "; ".join(describe_cause(c) for c in d.causes), highlight=False, markup=False
            )
    console.print(
        f"{report.identical} of {report.compared} binaries bit-identical ({report.share_text()})", highlight=False
    )


def register(app: typer.Typer) -> None:
    app.command("lock")(lock)
    app.command("rebuild")(rebuild)
    app.command("verify")(verify)
