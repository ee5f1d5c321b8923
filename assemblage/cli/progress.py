"""Rich progress over builds and the end-of-run summary."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from assemblage.pipeline.embedded import Progress as BaseProgress
from assemblage.pipeline.report import RunReport

__all__ = ["RichProgress", "print_summary", "report_json", "STATUS_STYLE"]

STATUS_STYLE = {
    "succeeded": ("✔", "green"),
    "failed": ("✘", "red"),
    "timed_out": ("⏱", "magenta"),
    "no_binaries": ("∅", "yellow"),
    "skipped": ("–", "dim"),
    "pending": ("…", "dim"),
    "running": ("▶", "cyan"),
}


class RichProgress(BaseProgress):
    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self.counts: Counter = Counter()
        self.total = 0
        self._progress: Progress | None = None
        self._task = TaskID(0)  # the bar's task, once started (used only with _progress)

    def _description(self) -> str:
        done = self.counts["succeeded"]
        bad = sum(v for k, v in self.counts.items() if k != "succeeded")
        left = self.total - done - bad
        return f"builds: [green]{done} done[/] [red]{bad} not built[/] {left} left"

    def start(self, total: int) -> None:
        self.total = total
        if not self.enabled:
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[last]}"),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(self._description(), total=total, last="")

    def grow(self, more: int) -> None:
        self.total += more
        if self._progress is not None and more:
            self._progress.update(self._task, total=self.total, description=self._description())

    def advance(self, status: str, label: str) -> None:
        self.counts[status] += 1
        if self._progress is not None:
            icon, style = STATUS_STYLE.get(status, ("?", "white"))
            self._progress.update(
                self._task, advance=1, description=self._description(), last=f"[{style}]{icon}[/] {label}"
            )

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def report_json(rep: RunReport, db_path: Path, elapsed: float | None) -> dict:
    """The summary as a JSON-able dict (``build --json``, ``report --json``; shape in docs/cli.md)."""
    return {
        "run": rep.run_id,
        "recipe": rep.recipe,
        "status": rep.status,
        "elapsed": round(elapsed, 3) if elapsed is not None else None,
        "builds": {"total": rep.total, **dict(sorted(rep.by_status.items()))},
        "reasons": [{"status": st, "reason": r, "builds": n} for (st, r), n in sorted(rep.by_reason.items())],
        "binaries": rep.binaries,
        "functions": rep.functions,
        "opt_mismatches": rep.opt_mismatches,
        "analysis_errors": rep.analysis_errors,
        "reused": rep.reused,
        "unsandboxed": rep.unsandboxed,
        "notes": list(rep.notes),
        "configurations": list(rep.configs),
        "cells": [
            {
                "build": c.build_id,
                "source": c.source,
                "position": c.position,
                "config": c.config,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "binaries": c.binaries,
                "reused": c.reused,
            }
            for c in rep.cells
        ],
        "dataset": str(db_path),
    }


def print_summary(console: Console, rep: RunReport, db_path: Path, elapsed: float | None) -> None:
    console.print()
    took = f" ({elapsed:.1f}s)" if elapsed is not None else f" ({rep.status})"
    console.rule(f"[bold]run {rep.run_id}: {rep.recipe}[/]{took}")
    for note in rep.notes:
        console.print(f"[yellow]note:[/] {note}")
    if rep.unsandboxed:
        console.print(
            f"[bold red]WARNING: {rep.unsandboxed} build(s) ran WITHOUT A SANDBOX (allow_unsandboxed is "
            "on): they had the network, the host's files and this user's rights[/]"
        )
    t = Table(title="Builds by status and reason", show_lines=False)
    t.add_column("status")
    t.add_column("reason")
    t.add_column("builds", justify="right")
    for status, n in sorted(rep.by_status.items(), key=lambda kv: -kv[1]):
        icon, style = STATUS_STYLE.get(status, ("?", "white"))
        reasons = [(r, c) for (st, r), c in rep.by_reason.items() if st == status]
        if not reasons:
            t.add_row(f"[{style}]{icon} {status}[/]", "", str(n))
        for r, k in sorted(reasons, key=lambda kv: -kv[1]):
            t.add_row(f"[{style}]{icon} {status}[/]", r, str(k))
        accounted = sum(c for _, c in reasons)
        if reasons and accounted < n:
            t.add_row(f"[{style}]{icon} {status}[/]", "", str(n - accounted))
    console.print(t)

    configs = rep.configs
    # columns name only what differs: "gcc-12-O2" under a "linux-x86_64" title
    prefixes = {"-".join(c.split("-")[:2]) for c in configs}
    common = prefixes.pop() if len(prefixes) == 1 else None
    title = "Coverage (source x configuration" + (f", all {common})" if common else ")")
    cov = Table(title=title, show_lines=False)
    cov.add_column("source")
    for c in configs:
        label = c[len(common) + 1 :] if common else c
        tc, _, opt = label.rpartition("-")
        cov.add_column(f"{tc}\n{opt}", justify="center")
    for pos, src in zip(rep.positions, rep.sources):
        row = [src]
        for c in configs:
            cell = rep.cell(pos, c)
            if cell is None:
                row.append("")
                continue
            icon, style = STATUS_STYLE.get(cell.status, ("?", "white"))
            row.append(f"[{style}]{icon}{cell.binaries if cell.binaries else ''}[/]")
        cov.add_row(*row)
    console.print(cov)
    failures = [c for c in rep.cells if c.status not in ("succeeded",)]
    for bad in failures[:10]:
        console.print(
            f"  [red]{bad.source} {bad.config}[/]: {bad.status} ({bad.reason}) {bad.message or ''}", highlight=False
        )
    if len(failures) > 10:
        console.print(f"  ... and {len(failures) - 10} more (see the builds table)")
    console.print(
        f"[bold]{rep.binaries}[/] binaries, [bold]{rep.functions}[/] functions"
        + (
            f", [yellow]{rep.opt_mismatches} optimisation label mismatch(es)[/]"
            if rep.opt_mismatches
            else ", labels verified"
        )
        + (f", {rep.analysis_errors} analysis error(s)" if rep.analysis_errors else "")
        + (f", {rep.reused} build(s) reused from earlier runs" if rep.reused else "")
    )
    console.print(f"dataset: [bold]{db_path}[/]")
