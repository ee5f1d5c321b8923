"""The export's datasheet: ``README.md`` with charts in ``charts/*.png``.

It answers the questions a user of a corpus asks before training on it (the
"datasheets for datasets" questions that apply to built binaries): what was
built from what (recipes, sources with their pins and licences, toolchain
versions), what it holds (counts by configuration, licence and source), what
did not build and why, where the labels come from and how often the
optimisation label was confirmed by the binary, how much is duplicated, and how
the split was made. Every number is computed inside the export's snapshot, over
the exported selection.

The README starts with Hugging Face dataset-card front matter whose
``configs`` name each table's files (and each side's, when split), so
``datasets.load_dataset(OUT, "functions")`` loads the functions table with its
splits. Charts are drawn with Pillow (:mod:`assemblage.corpus.export.charts`,
which says why not matplotlib) with no time or software PNG chunk, so the same
numbers give the same bytes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection

from assemblage.corpus.plan import SEL, Plan
from assemblage.corpus.request import ExportSummary
from assemblage.db import models as m

__all__ = ["Facts", "collect_facts", "write_datasheet"]

B, F = m.Binary.__table__, m.Function.__table__
_CONFIG_FILTERS = ("platform", "arch", "toolchain", "compiler", "version", "opt", "config")


@dataclass
class Facts:
    by_config: list[tuple[str, int, int]] = field(default_factory=list)  # config, binaries, functions
    by_license: list[tuple[str, int]] = field(default_factory=list)
    by_source: list[tuple[str, str, int, int]] = field(default_factory=list)  # source, kind, binaries, functions
    pins: list[dict[str, Any]] = field(default_factory=list)
    toolchains: list[tuple[str, str, int]] = field(default_factory=list)
    builds: list[tuple[str, str, str, int]] = field(default_factory=list)  # config, status, reason, builds
    labels: list[tuple[str, int]] = field(default_factory=list)
    agreement: list[tuple[str, int, int, int]] = field(default_factory=list)  # config, binaries, read back, mismatched


def collect_facts(conn: Connection, plan: Plan) -> Facts:
    """The datasheet's numbers, over the plan's selection (call inside the snapshot)."""
    facts = Facts()
    joined = B.join(SEL, SEL.c.binary_id == B.c.id)
    fjoined = plan.functions_from().join(B, B.c.id == F.c.binary_id)
    fconds = plan.function_conditions()
    nfunc: dict[str, int] = dict(
        conn.execute(select(B.c.config, func.count()).select_from(fjoined).where(*fconds).group_by(B.c.config)).all()
    )
    facts.by_config = [
        (c, int(n), int(nfunc.get(c, 0)))
        for c, n in conn.execute(
            select(B.c.config, func.count()).select_from(joined).group_by(B.c.config).order_by(B.c.config)
        )
    ]
    facts.by_license = [
        (lic or "unknown", int(n))
        for lic, n in conn.execute(
            select(B.c.license, func.count())
            .select_from(joined)
            .group_by(B.c.license)
            .order_by(func.count().desc(), B.c.license)
        )
    ]
    sfunc: dict[str, int] = dict(
        conn.execute(select(B.c.source, func.count()).select_from(fjoined).where(*fconds).group_by(B.c.source)).all()
    )
    facts.by_source = [
        (s, k, int(n), int(sfunc.get(s, 0)))
        for s, k, n in conn.execute(
            select(B.c.source, func.min(B.c.source_kind), func.count())
            .select_from(joined)
            .group_by(B.c.source)
            .order_by(B.c.source)
        )
    ]
    facts.toolchains = [
        (t, v or "", int(n))
        for t, v, n in conn.execute(
            select(B.c.toolchain, B.c.toolset_version, func.count())
            .select_from(joined)
            .group_by(B.c.toolchain, B.c.toolset_version)
            .order_by(B.c.toolchain, B.c.toolset_version)
        )
    ]
    facts.labels = [
        (ls, int(n))
        for ls, n in conn.execute(
            select(F.c.label_source, func.count())
            .select_from(plan.functions_from())
            .where(*fconds)
            .group_by(F.c.label_source)
            .order_by(F.c.label_source)
        )
    ]
    facts.agreement = [
        (c, int(n), int(seen or 0), int(bad or 0))
        for c, n, seen, bad in conn.execute(
            select(
                B.c.config,
                func.count(),
                func.sum(case((B.c.opt_observed.is_not(None), 1), else_=0)),
                func.sum(case((B.c.opt_mismatch.is_(True), 1), else_=0)),
            )
            .select_from(joined)
            .group_by(B.c.config)
            .order_by(B.c.config)
        )
    ]
    runs = select(B.c.run_id).select_from(joined).distinct()
    sources = select(B.c.source).select_from(joined).distinct()
    configs = select(B.c.config).select_from(joined).distinct()
    given = plan.selection.filters()
    q = (
        select(m.Configuration.identifier, m.Build.status, m.Build.reason, func.count())
        .join(m.Configuration, m.Configuration.id == m.Build.configuration_id)
        .join(m.Source, m.Source.id == m.Build.source_id)
        .where(m.Build.run_id.in_(runs))
    )
    if "source" in given or "source_kind" in given:
        q = q.where(m.Source.label.in_(sources))
    if any(k in given for k in _CONFIG_FILTERS):
        q = q.where(m.Configuration.identifier.in_(configs))
    facts.builds = [
        (c, s, r or "", int(n))
        for c, s, r, n in conn.execute(
            q.group_by(m.Configuration.identifier, m.Build.status, m.Build.reason).order_by(
                m.Configuration.identifier, m.Build.status, m.Build.reason
            )
        )
    ]
    seen: set[tuple[Any, ...]] = set()
    for row in conn.execute(
        select(
            m.Source.label,
            m.Source.kind,
            m.Source.pin,
            m.Source.commit,
            m.Source.version,
            m.Source.license,
            m.Source.url,
        )
        .where(m.Source.run_id.in_(runs), m.Source.label.in_(sources))
        .order_by(m.Source.label, m.Source.run_id)
    ):
        key = (row.label, row.pin)
        if key not in seen:
            seen.add(key)
            facts.pins.append(dict(row._mapping))
    return facts


# ------------------------------------------------------------------ rendering


def _cell(v: Any) -> str:
    return str(v if v is not None else "").replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[Any]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _front_matter(summary: ExportSummary, parts: dict[str, list[str]]) -> str:
    configs = []
    for name, prefixes in parts.items():
        if not prefixes:
            continue  # an empty table: datasets cannot load a config with no data
        if prefixes != ["part"]:
            files: Any = [{"split": s, "path": f"data/{name}/{s}-*.parquet"} for s in prefixes]
        else:
            files = f"data/{name}/*.parquet"
        entry: dict[str, Any] = {"config_name": name, "data_files": files}
        if name == "functions":
            entry["default"] = True
        configs.append(entry)
    doc = {
        "pretty_name": f"Assemblage corpus ({summary.corpus})",
        "tags": ["binary-analysis", "assemblage"],
        "configs": configs,
    }
    return "---\n" + yaml.safe_dump(doc, sort_keys=False) + "---\n"


def write_datasheet(
    root: Path, summary: ExportSummary, facts: Facts, recipes: list[dict[str, Any]], *, parts: dict[str, list[str]]
) -> list[Path]:
    """README.md and charts/*.png; returns the files written. ``parts``: each Parquet table's file prefixes."""
    charts = _charts(root, facts, summary)
    out: list[str] = [_front_matter(summary, parts)] if parts else []
    req = summary.request
    out.append(
        f"# Assemblage corpus export\n\nExported {summary.created_at:%Y-%m-%d %H:%M} UTC from "
        f"{summary.corpus} by assemblage {summary.assemblage_version}: **{summary.binaries} binaries**, "
        f"**{summary.tables.get('functions', 0)} functions**, {summary.objects} objects "
        f"({summary.object_bytes} bytes). `export.json` holds every number below.\n"
    )
    out.append(
        "## Contents\n\n"
        + _table(
            ["table", "rows", "where"],
            [
                (name, n, f"`data/{name}/`" + (", `dataset.sqlite`" if "sqlite" in req.formats else ""))
                for name, n in summary.tables.items()
            ],
        )
    )
    out.append(_LOADING.format(table_dir="data/functions"))
    filters = req.where.filters()
    options = {k: v for k, v in req.model_dump(mode="json", exclude={"where"}).items() if v not in (None, [], False)}
    out.append(
        "## Selection\n\n"
        + (_table(["filter", "value"], sorted(filters.items())) if filters else "Every binary of the corpus.\n")
        + "\n"
        + _table(["option", "value"], sorted((k, v) for k, v in options.items()))
        + f"\n{summary.candidates} binaries matched the filters; {summary.binaries} were exported.\n"
    )
    out.append(
        "## What was built from what\n\n"
        + (
            _table(
                ["run", "recipe", "sha256", "file"],
                [(r["run"], r["name"], r["sha256"][:16], f"`{r['file']}`") for r in recipes],
            )
            if recipes
            else ""
        )
        + "\n"
        + _table(
            ["source", "kind", "pin", "version", "licence"],
            [
                (p["label"], p["kind"], p["commit"] or p["pin"], p["version"], p["license"] or "unknown")
                for p in facts.pins
            ],
        )
        + "\n"
        + _table(["toolchain", "compiler version", "binaries"], facts.toolchains)
    )
    out.append(
        "## Composition\n\n![binaries by configuration](charts/configurations.png)\n\n"
        + _table(["configuration", "binaries", "functions"], facts.by_config)
        + "\n![functions by source](charts/sources.png)\n\n"
        + _table(["source", "kind", "binaries", "functions"], facts.by_source)
        + "\n![binaries by licence](charts/licenses.png)\n\n"
        + _table(["licence", "binaries"], facts.by_license)
    )
    out.append(
        "## Builds\n\nEvery build of the runs these binaries came from"
        " (restricted to the selected sources and configurations when the selection names them).\n\n"
        "![build outcomes by configuration](charts/builds.png)\n\n"
        + _table(["configuration", "status", "reason", "builds"], facts.builds)
    )
    agree = [(c, n, seen, bad, f"{(seen - bad) / seen:.1%}" if seen else "-") for c, n, seen, bad in facts.agreement]
    out.append(
        "## Labels\n\nWhere function boundaries and names come from (`functions.label_source`: `dwarf`, "
        "`pdb`, `symtab`, `both` = DWARF and the symbol table agree, ...):\n\n"
        + _table(["label source", "functions"], facts.labels)
        + "\nThe optimisation level of each binary is read back from the binary (DW_AT_producer, PDB "
        "compile records) and compared with its label:\n\n"
        + _table(["configuration", "binaries", "level read back", "mismatches", "agreement"], agree)
    )
    d = summary.dedup
    out.append(
        "## Deduplication\n\nCounted over the selection; an export keeps duplicates unless asked "
        "(`--unique-binaries`, `--drop-trivial`).\n\n"
        + _table(
            ["what", "before", "after", "duplicates"],
            [
                ("binaries by sha256", d.binaries.before, d.binaries.after, d.binaries.removed),
                (
                    "functions by exact bytes",
                    d.functions_exact.before,
                    d.functions_exact.after,
                    d.functions_exact.removed,
                ),
                (
                    "functions by position-independent hash",
                    d.functions_pic.before,
                    d.functions_pic.after,
                    d.functions_pic.removed,
                ),
                (
                    "non-trivial functions by position-independent hash",
                    d.functions_nontrivial_pic.before,
                    d.functions_nontrivial_pic.after,
                    d.functions_nontrivial_pic.removed,
                ),
            ],
        )
        + f"\n{d.trivial} functions are trivial (crt start-up code, thunks, size 0; `functions.trivial`).\n"
    )
    if summary.split is not None:
        s = summary.split
        out.append(
            "## Splits\n\n![functions by side](charts/splits.png)\n\n"
            f"By {s.by}, seed {s.seed}: no source, function family or position-independent hash is on "
            f"two sides. {s.sources} sources formed {s.components} components; {s.links_merged} shared "
            f"pic hashes merged sources, {s.links_cut} were cut (merging would exceed "
            f"{s.merge_limit:.0%} of the corpus); {s.dropped_pic_hashes} pic hashes were kept on one side "
            "only, dropping their other copies.\n\n"
            + _table(
                [
                    "side",
                    "requested",
                    "achieved (functions)",
                    "achieved (binaries)",
                    "binaries",
                    "functions",
                    "functions dropped",
                ],
                [
                    (
                        n,
                        s.ratios[n],
                        s.achieved.get(n),
                        s.achieved_binaries.get(n),
                        s.binaries.get(n),
                        s.functions.get(n),
                        s.dropped_functions.get(n),
                    )
                    for n in s.ratios
                ],
            )
            + ("\nMerged components:\n\n" + "".join(f"- {', '.join(c)}\n" for c in s.merged) if s.merged else "")
        )
    out.append("## Checking it\n\n```sh\nsha256sum -c MANIFEST.sha256\n```\n")
    readme = root / "README.md"
    readme.write_text("\n".join(out), encoding="utf-8")
    return [readme, *charts]


_LOADING = """## Loading it

```python
import pyarrow.dataset as ds
functions = ds.dataset("{table_dir}", format="parquet").to_table()

from datasets import load_dataset
functions = load_dataset("parquet", data_dir="{table_dir}")   # or load_dataset(".", "functions")

import sqlite3
db = sqlite3.connect("dataset.sqlite")   # the Assemblage schema: binaries, functions, rvas, lines, pdbs
```

Binaries are in `objects/<sha256[:2]>/<sha256>` (`binaries.path` is that path); `binaries.hash` is their sha256.
"""


def _charts(root: Path, facts: Facts, summary: ExportSummary) -> list[Path]:
    """Horizontal bar charts of the composition (:mod:`assemblage.corpus.export.charts`)."""
    from assemblage.corpus.export.charts import bar_chart

    folder = root / "charts"
    folder.mkdir()
    written = []
    colours = {
        "succeeded": "#228833",
        "failed": "#ee6677",
        "timed_out": "#aa3377",
        "no_binaries": "#ccbb44",
        "skipped": "#bbbbbb",
    }

    def chart(name: str, title: str, labels: list[str], series: list[tuple[str, list[int]]], xlabel: str) -> None:
        written.append(bar_chart(folder / name, title, labels, series, xlabel, colours))

    chart(
        "configurations.png",
        "Binaries by configuration",
        [c for c, _, _ in facts.by_config],
        [("binaries", [n for _, n, _ in facts.by_config])],
        "binaries",
    )
    top = sorted(facts.by_source, key=lambda r: (-r[3], r[0]))[:30]
    chart(
        "sources.png",
        "Functions by source" + (" (top 30)" if len(facts.by_source) > 30 else ""),
        [s for s, *_ in top],
        [("functions", [f for *_, f in top])],
        "functions",
    )
    chart(
        "licenses.png",
        "Binaries by licence",
        [lic for lic, _ in facts.by_license],
        [("binaries", [n for _, n in facts.by_license])],
        "binaries",
    )
    outcomes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for config, status, _reason, n in facts.builds:
        outcomes[config][status] += n
    configs = sorted(outcomes)
    statuses = sorted({s for per in outcomes.values() for s in per})
    chart(
        "builds.png",
        "Build outcomes by configuration",
        configs,
        [(s, [outcomes[c].get(s, 0) for c in configs]) for s in statuses],
        "builds",
    )
    if summary.split is not None:
        s = summary.split
        chart(
            "splits.png",
            "Functions by side",
            list(s.ratios),
            [("functions", [s.functions.get(n, 0) for n in s.ratios])],
            "functions",
        )
    return written
