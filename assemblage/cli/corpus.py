"""``assemblage select`` and ``assemblage export``: curated corpora from a dataset folder or the service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register"]

_Target = Annotated[
    str,
    typer.Argument(
        metavar="DATASET_OR_SERVICE",
        help="A dataset folder (DIR/dataset.sqlite + DIR/objects), or 'service': the service's database and store "
        "from its settings (ASSEMBLAGE_DATABASE_URL, ASSEMBLAGE_STORAGE_URL)",
    ),
]
_Where = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        "-w",
        help="NAME=VALUE filter, repeatable: platform, arch, toolchain, compiler, version, opt, config, "
        "format, kind, license, source, source_kind, run, build, size=LO..HI, functions=LO..HI, "
        "has_pdb, opt_mismatch, sample, sample_per_config, seed (docs/export.md)",
    ),
]
_DatabaseUrl = Annotated[str | None, typer.Option("--database-url", help="Read this database (with 'service')")]
_StorageUrl = Annotated[str | None, typer.Option("--storage-url", help="Read this object store (with 'service')")]
_Settings = Annotated[Path | None, typer.Option("--settings", help="A TOML settings file (the environment wins)")]
_Json = Annotated[bool, typer.Option("--json", help="Print JSON")]


def _corpus(target: str, database_url: str | None, storage_url: str | None, settings_file: Path | None):
    from assemblage.corpus.source import open_corpus

    settings = None
    if target == "service" or database_url or storage_url:
        from assemblage.settings import load_settings

        settings = load_settings(settings_file) if settings_file else load_settings()
    return open_corpus(target, database_url=database_url, storage_url=storage_url, settings=settings)


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


class _RichProgress:
    """One line per phase on a terminal (phases are few; rows fly by too fast for a bar to help)."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.console, self.enabled = console, enabled
        self.name: str | None = None
        self.done = 0
        self.total: int | None = None

    def phase(self, name: str, total: int | None = None) -> None:
        self._end()
        self.name, self.done, self.total = name, 0, total

    def advance(self, n: int = 1) -> None:
        self.done += n

    def _end(self) -> None:
        if self.enabled and self.name is not None:
            count = f" {self.done}" + (f"/{self.total}" if self.total is not None else "") if self.done else ""
            self.console.print(f"[dim]{self.name}{count}[/]", highlight=False)

    def stop(self) -> None:
        self._end()
        self.name = None


def register(app: typer.Typer) -> None:
    @app.command("select")
    def select_cmd(
        target: _Target,
        where: _Where = None,
        rows: Annotated[int, typer.Option("--rows", min=0, help="Also list the first N binaries")] = 0,
        as_json: _Json = False,
        database_url: _DatabaseUrl = None,
        storage_url: _StorageUrl = None,
        settings_file: _Settings = None,
    ) -> None:
        """Count (and list) the binaries a selection picks, with their functions and duplicates."""
        from assemblage.corpus.plan import describe_selection
        from assemblage.corpus.select import parse_where

        selection = parse_where(where or [])
        corpus = _corpus(target, database_url, storage_url, settings_file)
        with corpus.snapshot() as conn:
            summary = describe_selection(conn, selection, rows=rows)
        if as_json:
            doc = {
                "corpus": corpus.description,
                "where": selection.filters(),
                "candidates": summary.candidates,
                "binaries": summary.binaries,
                "functions": summary.functions,
                "by_config": summary.by_config,
                "dedup": summary.dedup.model_dump(),
                "rows": summary.rows,
            }
            typer.echo(json.dumps(doc, indent=2, default=str))
            return
        console = Console()
        console.print(
            f"{corpus.description}: [bold]{summary.binaries}[/] binaries "
            f"({summary.candidates} match the filters), [bold]{summary.functions}[/] functions",
            highlight=False,
        )
        t = Table("configuration", "binaries", "functions", title="By configuration")
        for config, c in summary.by_config.items():
            t.add_row(config, str(c["binaries"]), str(c["functions"]))
        console.print(t)
        d = summary.dedup
        t = Table("duplicates", "before", "after", title="Deduplication")
        for label, counts in (
            ("binaries by sha256", d.binaries),
            ("functions by exact bytes", d.functions_exact),
            ("functions by pic hash", d.functions_pic),
            ("non-trivial functions by pic hash", d.functions_nontrivial_pic),
        ):
            t.add_row(label, str(counts.before), str(counts.after))
        console.print(t)
        console.print(f"{d.trivial} trivial functions (crt start-up, thunks, size 0)")
        if summary.rows:
            t = Table("id", "configuration", "source", "file", "sha256", "functions", "size")
            for r in summary.rows:
                t.add_row(
                    str(r["id"]),
                    r["config"],
                    r["source"],
                    r["file_name"],
                    r["hash"][:12],
                    str(r["function_count"]),
                    str(r["size"]),
                )
            console.print(t)

    @app.command("export")
    def export_cmd(
        target: _Target,
        out: Annotated[Path, typer.Option("--out", "-o", help="A new folder for the export")],
        formats: Annotated[
            str, typer.Option("--format", help="Comma-separated: parquet, sqlite, files")
        ] = "parquet,sqlite,files",
        where: _Where = None,
        split: Annotated[str | None, typer.Option(help="Sides and shares, e.g. train=0.8,valid=0.1,test=0.1")] = None,
        by: Annotated[str, typer.Option(help="What no two sides share: source")] = "source",
        seed: Annotated[
            int, typer.Option(min=0, help="Seed of the split, the pairs and (unless --where seed=) the sample")
        ] = 0,
        merge_limit: Annotated[
            float | None,
            typer.Option(help="Largest share a merged split component may reach (default: the smallest side's share)"),
        ] = None,
        pairs: Annotated[int, typer.Option(min=0, help="Positive pairs per function family (data/pairs)")] = 0,
        drop_trivial: Annotated[
            bool, typer.Option(help="Leave out trivial functions (crt start-up, thunks, size 0)")
        ] = False,
        unique_binaries: Annotated[bool, typer.Option(help="One binary per sha256")] = False,
        include: Annotated[str | None, typer.Option("--with", help="Also copy: pdbs, stripped")] = None,
        archive: Annotated[bool, typer.Option(help="The objects as one objects.tar.zst")] = False,
        as_json: _Json = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress")] = False,
        database_url: _DatabaseUrl = None,
        storage_url: _StorageUrl = None,
        settings_file: _Settings = None,
    ) -> None:
        """Export a curated corpus: Parquet tables, dataset.sqlite (Assemblage schema), the binaries, a datasheet."""
        from pydantic import ValidationError

        from assemblage.corpus import export_corpus
        from assemblage.corpus.request import ExportRequest
        from assemblage.corpus.select import parse_where
        from assemblage.corpus.splits import parse_split
        from assemblage.errors import Problem, SelectionError

        base = {} if any(w.split("=", 1)[0].strip() == "seed" for w in where or []) else {"seed": seed}
        selection = parse_where(where or [], base=base)
        spec = parse_split(split, by=by, merge_limit=merge_limit) if split else None
        if split is None and (by != "source" or merge_limit is not None):
            raise SelectionError([Problem("--by/--merge-limit", "only with --split")])
        data: dict[str, Any] = {
            "where": selection,
            "formats": _csv(formats),
            "split": spec,
            "seed": seed,
            "pairs": pairs,
            "drop_trivial": drop_trivial,
            "unique_binaries": unique_binaries,
            "include": _csv(include),
            "archive": archive,
        }
        try:
            request = ExportRequest.model_validate(data)
        except ValidationError as exc:
            names = {"formats": "--format", "include": "--with"}
            raise SelectionError(
                [
                    Problem(names.get(str(e["loc"][0]), f"--{e['loc'][0]}"), e["msg"].removeprefix("Value error, "))
                    for e in exc.errors(include_url=False)
                ]
            ) from None
        corpus = _corpus(target, database_url, storage_url, settings_file)
        err = Console(stderr=True)
        progress = _RichProgress(err, enabled=not quiet and not as_json and err.is_terminal)
        summary = export_corpus(corpus, request, out, progress=progress)
        progress.stop()
        if as_json:
            typer.echo(summary.model_dump_json(indent=2))
            return
        console = Console()
        t = ", ".join(f"{name} {n}" for name, n in summary.tables.items())
        console.print(
            f"[green]exported[/] {summary.binaries} binaries to {out}: {t}; {summary.objects} objects "
            f"({summary.object_bytes} bytes); {summary.files} files in MANIFEST.sha256",
            highlight=False,
        )
        if summary.split is not None:
            s = summary.split
            sides = ", ".join(f"{n} {s.achieved.get(n, 0):.1%} ({s.functions.get(n, 0)} functions)" for n in s.ratios)
            dropped = sum(s.dropped_functions.values())
            console.print(
                f"split by {s.by}: {sides}; {s.components} components from {s.sources} sources, "
                f"{dropped} functions dropped to keep the sides disjoint",
                highlight=False,
            )
