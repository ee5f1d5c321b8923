"""``assemblage crawl RECIPE``: run the recipe's searches and say what they would add, building nothing."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

__all__ = ["crawl_recipe"]


def crawl_recipe(
    recipe_path: Path,
    out: Path | None,
    *,
    as_json: bool,
    console: Console,
    debian_cache: Path | None = None,
    show_all: bool = False,
) -> None:
    """Crawl every ``github:`` source of the recipe (resumable, with the answer cache of ``out`` when given).

    ``debian:`` selectors are expanded too (:mod:`assemblage.cli.crawl_debian`), fetching into ``debian_cache``.
    """
    from assemblage.db.migrate import prepare_dataset
    from assemblage.db.session import make_engine, make_sessionmaker, session_scope, sqlite_url
    from assemblage.pipeline.crawl import crawl_report, create_crawl, fail_crawl, make_client, run_crawl
    from assemblage.recipes.load import load_recipe
    from assemblage.recipes.models import GithubSource
    from assemblage.settings import load_settings

    rec, _ = load_recipe(recipe_path)
    searches = [(i, s) for i, s in enumerate(rec.sources) if isinstance(s, GithubSource)]
    settings = load_settings()
    with tempfile.TemporaryDirectory(prefix="asm-crawl-") as tmp:
        folder = Path(out) if out is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        engine = make_engine(sqlite_url(folder / "dataset.sqlite"))
        prepare_dataset(engine)
        sessions = make_sessionmaker(engine)
        reports = []
        for position, spec in searches:
            with session_scope(sessions) as s:
                cid = create_crawl(s, spec, position=position).id
            try:
                with make_client(settings, sessions, max_wait=3600) as client:
                    run_crawl(sessions, cid, client)
            except Exception as exc:  # noqa: BLE001 - said as the search's failure, like a run would
                fail_crawl(sessions, cid, str(exc))
            with sessions() as s:
                reports.append({"position": position, **crawl_report(s, cid)})
        engine.dispose()
    # [h8-debian-deps] debian selectors: the packages they would add
    from assemblage.cli.crawl_debian import debian_reports, print_debian_report

    debian = debian_reports(rec.sources, debian_cache or Path("assemblage-data/sources"), show_all=show_all)
    doc = {"recipe": str(recipe_path), "sources": sorted(reports + debian, key=lambda r: r["position"])}
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    for rep in debian:
        print_debian_report(console, rep)
    if not reports and not debian:
        console.print("the recipe has no search to crawl (github: sources or debian: selectors)")
    for rep in reports:
        console.print(
            f"[bold]sources[{rep['position']}] github: {rep['query']}[/]: {rep['status']}"
            f" ({rep['requests']} requests, {rep['not_modified']} unchanged)",
            highlight=False,
        )
        if rep["error"]:
            console.print(f"  [red]{rep['error']}[/]", highlight=False, markup=False)
        t = Table("repository", "commit", "build system", "licence")
        for a in rep["accepted"]:
            t.add_row(a["repository"], (a["commit"] or "")[:12], a["build_system"] or "", a["license"] or "")
        console.print(t)
        console.print("  " + ", ".join(f"{k}: {v}" for k, v in sorted(rep["repositories"].items())), highlight=False)
