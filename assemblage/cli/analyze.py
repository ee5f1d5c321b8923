"""``assemblage analyze`` and ``assemblage verify-labels``.

``register(app)`` adds both commands to the main Typer app. Each file is
analysed in a bounded child process (:func:`analyze_file_bounded`); a file
that cannot be analysed prints ``error: <file>: <problem>`` and the command
exits 6 after the other files were processed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..errors import AssemblageError, InvalidBinaryError

if TYPE_CHECKING:  # the analysis is imported by the commands that run it (every other command starts faster)
    from ..binaries import BinaryAnalysis

__all__ = ["register"]

_err = Console(stderr=True)


def _fail(exc: AssemblageError) -> None:
    _err.print(f"error: {exc}", markup=False, highlight=False)


def _summary(rows: list[BinaryAnalysis]) -> Table:
    t = Table(title="Binary analysis")
    for col in (
        "file",
        "format",
        "arch",
        "kind",
        "functions",
        "dwarf/symtab/both",
        "inlinings",
        "opt",
        "producer",
        "disagreements",
    ):
        t.add_column(col)
    for a in rows:
        by = {k: sum(1 for f in a.functions if f.label_source == k) for k in ("dwarf", "symtab", "both")}
        comp = next((p for p in a.producers if p.compiler in ("gcc", "clang", "msvc")), None)
        t.add_row(
            Path(a.path).name,
            a.format,
            a.arch,
            a.kind,
            str(len(a.functions)),
            f"{by['dwarf']}/{by['symtab']}/{by['both']}",
            str(len(a.inlinings)),
            a.observed_opt or "?",
            f"{comp.compiler} {comp.version}" if comp else "?",
            str(len(a.disagreements)),
        )
    return t


def analyze(
    files: Annotated[list[Path], typer.Argument(help="ELF or PE files to analyse")],
    pdb: Annotated[Path | None, typer.Option("--pdb", help="PDB of the (single) PE file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per file per line")] = False,
    lines: Annotated[bool, typer.Option("--lines", help="include line rows per function in the JSON")] = False,
    timeout: Annotated[float, typer.Option(help="seconds per file")] = 300.0,
    memory: Annotated[int, typer.Option(help="memory budget per file, MiB")] = 2048,
) -> None:
    """Extract ground truth (functions, lines, provenance, hashes) from binaries."""
    from ..binaries import analyze_file_bounded

    failed = False
    done: list[BinaryAnalysis] = []
    for f in files:
        try:
            a = analyze_file_bounded(f, pdb=pdb, timeout=timeout, memory=memory * 1024**2, lines=lines)
        except InvalidBinaryError as exc:
            _fail(exc)
            failed = True
            continue
        if as_json:
            typer.echo(json.dumps(a.to_json(lines=lines)))
        else:
            done.append(a)
    if done:
        Console().print(_summary(done))
    if failed:
        sys.exit(InvalidBinaryError.exit_code)  # sys.exit, not typer.Exit: main() runs click with standalone_mode=False


def verify_labels(
    binaries: Annotated[list[Path], typer.Argument(help="ELF binaries to check")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON report per binary per line")] = False,
    timeout: Annotated[float, typer.Option(help="analysis seconds per file")] = 300.0,
) -> None:
    """Compare our labels with llvm-dwarfdump-19, readelf and c++filt; exit 1 on unexplained differences."""
    from ..binaries import analyze_file_bounded
    from ..binaries.bounded import run_bounded
    from ..binaries.verify import verify_binary

    code = 0
    table = Table(title="Label verification")
    for col in ("file", "dwarf", "symtab", "lines", "explained", "unexplained"):
        table.add_column(col)
    for b in binaries:
        try:
            a = analyze_file_bounded(b, timeout=timeout)
            # the oracles (llvm-dwarfdump, readelf, c++filt) and capstone read the file too: same limits
            rep = run_bounded(
                verify_binary, str(b), a, path=str(b), what="verification", timeout=timeout, memory=2 * 1024**3
            )
        except AssemblageError as exc:
            _fail(exc)
            code = max(code, exc.exit_code)
            continue
        if not rep.ok:
            code = max(code, 1)
        if as_json:
            typer.echo(json.dumps(rep.to_json()))
            continue
        c = rep.counts
        table.add_row(
            b.name,
            f"{c.get('dwarf_matched', 0)}/{c.get('dwarf_oracle_subprograms', 0)}",
            f"{c.get('symtab_matched', 0)}/{c.get('symtab_oracle', 0)}",
            f"{c.get('lines_matched', 0)}/{c.get('lines_oracle', 0)}",
            ", ".join(f"{k}={v}" for k, v in sorted(rep.explained.items())) or "-",
            str(len(rep.unexplained)),
        )
        for u in rep.unexplained[:50]:
            _err.print(f"{b}: {u}", markup=False, highlight=False)
    if not as_json and table.row_count:
        Console().print(table)
    if code:
        sys.exit(code)


def register(app: typer.Typer) -> None:
    """Add ``analyze`` and ``verify-labels`` to ``app``."""
    app.command("analyze")(analyze)
    app.command("verify-labels")(verify_labels)
