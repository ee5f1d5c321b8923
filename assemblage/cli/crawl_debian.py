"""``assemblage crawl``'s Debian part: the packages ``debian:`` selectors would add, building nothing.

    assemblage crawl RECIPE [--all] [--cache DIR] [--json]
    assemblage crawl --debian '{section: libs, language: c, limit: 20, seed: 7}' [--all] [--json]

For each selector: the packages kept (name, version, section, size, licence,
main language) and, with ``--all``, those looked at and left out, with why.
In the JSON document each selector is one entry of ``sources``:
``{"position", "kind": "debian", "selector", "packages": [...], "left_out": [...]}``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from assemblage.errors import Problem, RecipeError

__all__ = ["crawl_debian_selector", "debian_reports", "print_debian_report"]


def _selector_spec(text: str):
    from pydantic import ValidationError

    from assemblage.recipes.models import DebianSource

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError([Problem("--debian", f"not YAML: {exc}")]) from None
    try:
        return DebianSource.model_validate({"debian": doc})
    except ValidationError as exc:
        raise RecipeError(
            [
                Problem("--debian" + "".join(f".{p}" for p in e["loc"][1:]), e["msg"])
                for e in exc.errors(include_url=False)
            ]
        ) from None


def debian_reports(sources: list, cache: Path, *, show_all: bool) -> list[dict]:
    """One report per ``debian:`` selector of ``sources`` (plain ``debian: NAME`` entries need no crawl)."""
    from assemblage.recipes.models import DebianSource
    from assemblage.sources.debian_select import expand_debian

    reports = []
    for position, spec in enumerate(sources):
        if not isinstance(spec, DebianSource) or isinstance(spec.debian, str):
            continue
        kept: list[dict] = []
        left: list[dict] = []

        def note(s, kept=kept, left=left) -> None:
            (kept if s.kept else left).append(asdict(s))

        expand_debian(spec, cache=cache, report=note)
        reports.append(
            {
                "position": position,
                "kind": "debian",
                "selector": spec.debian.model_dump(mode="json"),
                "packages": kept,
                "left_out": left if show_all else [],
                "looked_at": len(kept) + len(left),
            }
        )
    return reports


def print_debian_report(console: Console, rep: dict) -> None:
    sel = ", ".join(f"{k}: {v}" for k, v in rep["selector"].items() if v not in (None, [], ""))
    console.print(
        f"[bold]sources[{rep['position']}] debian: {{{sel}}}[/]: {len(rep['packages'])} package(s), "
        f"{rep['looked_at']} looked at",
        highlight=False,
    )
    table = Table("package", "version", "section", "size", "licence", "language", "left out because")
    for p in rep["packages"] + rep["left_out"]:
        table.add_row(
            p["package"],
            p["version"],
            p["section"],
            f"{p['size'] / 1024:.0f} KiB" if p["size"] else "",
            p["license"] or "",
            p["language"] or "",
            "" if p["kept"] else p["why"],
        )
    console.print(table)


def crawl_debian_selector(text: str, cache: Path, *, as_json: bool, show_all: bool, console: Console) -> None:
    reports = debian_reports([_selector_spec(text)], cache, show_all=show_all)
    if as_json:
        print(json.dumps({"recipe": None, "sources": reports}, indent=2))
        return
    for rep in reports:
        print_debian_report(console, rep)
