"""A small real corpus for the export tests, built with real compilers, and independent readers of exports.

Five sources, copied from recipes/samples into a scratch folder so they can carry
licence files: ``calc`` (MIT), ``calc-fork`` (the same code, ``MIT OR
Apache-2.0``: it shares every function with calc, the case a split must not
leak), ``vecmath`` (GPL-2.0, a shared library), ``wordfreq`` (no licence file)
and ``shapes`` (BSD-3-Clause, C++ with a shared library). Built for Linux with
gcc-12 and clang-19 at O0 and O2, and for Windows with clang-19 at O2 (PE + PDB).

The embedded dataset is built once per test session (both export test modules
use it). Relative ``path:`` sources resolve against the scratch folder, which is
also the service's source root in the service tests, so both modes record the
same source labels.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "recipes" / "samples"

RECIPE = """\
name: corpus-test
sources:
  - path: src/calc
  - path: src/calc-fork
  - path: src/vecmath
  - path: src/wordfreq
  - path: src/shapes
matrix:
  platform: [linux, windows]
  arch: [x86_64]
  toolchain: [gcc-12, clang-19]
  opt: [O0, O2]
exclude:
  - {platform: windows, opt: O0}
outputs:
  stripped: true
"""

LICENSES = {"calc": "MIT", "calc-fork": "MIT OR Apache-2.0", "vecmath": "GPL-2.0", "shapes": "BSD-3-Clause"}


def make_sources(root: Path) -> Path:
    """``root/src/<name>`` for every source of RECIPE; returns root (the recipe's base)."""
    src = root / "src"
    if src.exists():
        return root
    for name, sample in (
        ("calc", "calc"),
        ("calc-fork", "calc"),
        ("vecmath", "vecmath"),
        ("wordfreq", "wordfreq"),
        ("shapes", "shapes"),
    ):
        shutil.copytree(SAMPLES / sample, src / name)
        if name in LICENSES:
            (src / name / "LICENSE").write_text(f"SPDX-License-Identifier: {LICENSES[name]}\n")
    return root


def build_embedded(root: Path) -> Path:
    """The embedded dataset of RECIPE at ``root/dataset`` (built once; reused when already there)."""
    from assemblage.pipeline.embedded import open_dataset, run_recipe
    from assemblage.recipes.load import parse_recipe_text

    out = root / "dataset"
    marker = out / ".built"
    if marker.exists():
        return out
    make_sources(root)
    dataset = open_dataset(out)
    run_recipe(dataset, parse_recipe_text(RECIPE), RECIPE, root, jobs=2)
    marker.write_text("ok")
    return out


# ------------------------------------------------------------------ reading exports independently


def read_table(export: Path, table: str) -> list[dict[str, Any]]:
    """Every row of ``data/<table>`` as dicts (pyarrow.dataset over the folder)."""
    import pyarrow.dataset as ds

    return ds.dataset(export / "data" / table, format="parquet").to_table().to_pylist()


def independent_family(source: str, source_file: str | None, decl_line: int | None, name: str) -> str | None:
    """The family key, as docs/export.md defines it, without using assemblage's code."""
    if source_file is None or decl_line is None:
        return None
    return f"{source}|{source_file}|{decl_line}|{name}"


def sha256_path(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def binary_key(b: dict[str, Any]) -> tuple[str, str, str]:
    """What identifies a binary across databases: its source, configuration and place in the build."""
    return (b["source"], b["config"], b["relpath"])


# What legitimately differs between the same recipe exported from the embedded dataset and from the
# service: database ids (and every column holding one), and the run's own bookkeeping. Everything else
# must be equal, value for value.
ID_COLUMNS = {"id", "binary_id", "function_id", "build_id", "run_id", "function_a", "function_b"}


def canonical_tables(export: Path) -> dict[str, list[tuple]]:
    """The export's Parquet tables with ids replaced by content keys, as sorted lists of rows.

    binaries: every column but ids, keyed by (source, config, relpath);
    functions: every column but ids, plus the binary's key; rvas, lines: every column but ids, plus the
    function's key (binary key, start, end, name); pdbs, splits, families, pairs: the same, through the keys.
    """
    binaries = read_table(export, "binaries")
    bkey = {b["id"]: binary_key(b) for b in binaries}
    functions = read_table(export, "functions")
    fkey = {f["id"]: (bkey[f["binary_id"]], f["start"], f["end"], f["name"]) for f in functions}

    def strip(row: dict[str, Any]) -> tuple:
        return tuple(sorted((k, _plain(v)) for k, v in row.items() if k not in ID_COLUMNS))

    out: dict[str, list[tuple]] = {
        "binaries": sorted((bkey[b["id"]], strip(b)) for b in binaries),
        "functions": sorted((fkey[f["id"]], strip(f)) for f in functions),
    }
    for table in ("rvas", "lines"):
        out[table] = sorted((fkey[r["function_id"]], strip(r)) for r in read_table(export, table))
    out["pdbs"] = sorted((bkey[p["binary_id"]], strip(p)) for p in read_table(export, "pdbs"))
    out["families"] = sorted((r["family_id"], fkey[r["function_id"]]) for r in read_table(export, "families"))
    if (export / "data" / "splits").exists():
        out["splits"] = sorted((bkey[r["binary_id"]], r["split"]) for r in read_table(export, "splits"))
    if (export / "data" / "pairs").exists():
        out["pairs"] = sorted(
            (r["family_id"], fkey[r["function_a"]], fkey[r["function_b"]]) for r in read_table(export, "pairs")
        )
    return out


def _plain(v: Any) -> Any:
    return v.isoformat() if hasattr(v, "isoformat") else v
