"""Source text per function, end to end: a real corpus built by ``assemblage build``, checked
against universal-ctags (where each function starts and ends in the checkout) and against
the checkout's files read here, and read by a client of the published Assemblage schema."""

from __future__ import annotations

import json
import posixpath
import re
import shutil
import sqlite3
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLES, need

pytestmark = pytest.mark.integration

FIXTURE = REPO / "tests" / "fixtures" / "sourcetext"
PUBLISHED_CLIENT = REPO / "tests" / "fixtures" / "published_schema" / "read_corpus.py"
VIEW = "/build/src/"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    need("gcc-12", "clang-19", "ctags", "apt-get")
    root = tmp_path_factory.mktemp("sourcetext")
    shutil.copytree(FIXTURE, root / "texts")
    recipe = root / "recipe.yaml"
    recipe.write_text(f"""
name: source-text
sources:
  - path: {root / "texts"}
  - path: {SAMPLES / "calc"}
  - path: {SAMPLES / "shapes"}
  - debian: zlib
    suite: bookworm
matrix:
  toolchain: [gcc-12, clang-19]
  opt: [O0, O2]
exclude:
  - {{toolchain: gcc-12, opt: O2}}
  - {{toolchain: clang-19, opt: O0}}
""")
    r = subprocess.run(
        [sys.executable, "-m", "assemblage.cli", "build", str(recipe), "--out", str(root / "out"), "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return root / "out"


def connect(out: Path) -> sqlite3.Connection:
    con = sqlite3.connect(out / "dataset.sqlite")
    con.row_factory = sqlite3.Row
    return con


def split_lines(path: Path) -> list[str]:
    """The file's lines as the compilers number them (LF, CRLF or a lone CR)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return re.split(r"\r\n|\r|\n", text)


@cache
def ctags_functions(path: Path) -> dict[int, list[dict]]:
    """universal-ctags' function definitions in one file, by line: each with its ``end`` line."""
    out = subprocess.run(
        ["ctags", "--output-format=json", "--fields=+neKS", "-f", "-", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    by_line: dict[int, list[dict]] = {}
    for row in out.splitlines():
        tag = json.loads(row)
        if tag.get("kind") == "function" and "end" in tag:
            by_line.setdefault(tag["line"], []).append(tag)
    return by_line


def checkout_file(checkout: str, debug_path: str | None) -> Path | None:
    """Where a debug path of the build is in the checkout, by this test's own reading of the sandbox layout."""
    if not debug_path:
        return None
    norm = posixpath.normpath(debug_path)
    if not norm.startswith(VIEW):
        return None
    path = Path(checkout) / norm[len(VIEW) :]
    return path if path.is_file() else None


def short(label: str) -> str:
    return "zlib" if label.startswith("debian:zlib") else label.rsplit("/", 1)[-1]


def functions(out: Path):
    con = connect(out)
    rows = con.execute("""
        SELECT f.id, f.name, f.source_file, f.decl_line, f.source_codes, f.top_comments, b.config, s.checkout, s.label
        FROM functions f JOIN binaries b ON f.binary_id = b.id JOIN builds bu ON b.build_id = bu.id
        JOIN sources s ON bu.source_id = s.id
        WHERE f.source_file IS NOT NULL AND f.decl_line IS NOT NULL""").fetchall()
    con.close()
    return rows


def test_every_function_in_the_checkout_has_its_text(corpus: Path) -> None:
    rows = functions(corpus)
    inside = [r for r in rows if checkout_file(r["checkout"], r["source_file"])]
    outside = [r for r in rows if not checkout_file(r["checkout"], r["source_file"])]
    assert len(inside) > 300
    assert [r["name"] for r in inside if not r["source_codes"]] == []
    # system headers (libstdc++'s templates instantiated in shapes) get no text
    assert outside and all(r["source_codes"] is None and r["top_comments"] is None for r in outside)
    labels = {r["label"] for r in inside}
    assert {short(label) for label in labels} == {"texts", "calc", "shapes", "zlib"}


def test_source_text_equals_the_lines_ctags_finds_in_the_checkout(corpus: Path) -> None:
    compared, extended = 0, []
    for r in functions(corpus):
        path = checkout_file(r["checkout"], r["source_file"])
        if path is None:
            continue
        base = r["name"].split("<")[0]
        tags = [t for t in ctags_functions(path).get(r["decl_line"], []) if t["name"] == base]
        if not tags:
            continue
        lines = split_lines(path)
        start, end = tags[0]["line"], tags[0]["end"]
        ours = r["source_codes"].split("\n")
        above = len(ours) - (end - start + 1)  # lines of the declaration written above the name line
        assert 0 <= above <= 8, (r["name"], path, start, end, r["source_codes"])
        assert ours == lines[start - 1 - above : end], (r["name"], r["config"], path)
        if above:
            extended.append(r["name"])
            assert not any(c in "".join(ours[:above]) for c in ";{}")
            assert r["name"] == "gnu_style" or ours[0].startswith("template <"), r["name"]
        compared += 1
    assert compared > 300
    # its return type on the line above (GNU style), and shapes.hpp's function templates
    assert {"gnu_style", "sum_of<double>"} <= set(extended)


def test_top_comments_sit_right_above_the_function(corpus: Path) -> None:
    found = {}
    for r in functions(corpus):
        if not r["top_comments"]:
            continue
        path = checkout_file(r["checkout"], r["source_file"])
        lines = split_lines(path)
        comment = r["top_comments"].split("\n")
        first = r["source_codes"].split("\n")[0]
        starts = [i for i in range(len(lines)) if lines[i : i + len(comment)] == comment]
        assert any(lines[i + len(comment)] == first for i in starts), (r["name"], path)
        assert comment[0].lstrip().startswith(("/*", "//")), r["name"]
        found[(short(r["label"]), r["name"])] = r["top_comments"]
    assert found[("texts", "gnu_style")] == (
        "/*\n * GNU style: the return type on its own line.\n * A second line of the comment.\n */"
    )
    assert found[("texts", "kr_style")] == "// K&R style: parameters declared between the\n// declarator and the body."
    assert ("texts", "one_line") not in found
    assert sum(1 for (label, _) in found if label == "zlib") > 50  # zlib documents its functions


def test_each_line_row_carries_the_text_of_its_line(corpus: Path) -> None:
    con = connect(corpus)
    rows = con.execute("""
        SELECT l.source_file, l.line_number, l.source_code, s.checkout
        FROM lines l JOIN functions f ON l.function_id = f.id JOIN binaries b ON f.binary_id = b.id
        JOIN builds bu ON b.build_id = bu.id JOIN sources s ON bu.source_id = s.id""").fetchall()
    con.close()
    with_text = without = 0
    for r in rows:
        path = checkout_file(r["checkout"], r["source_file"])
        if path is None or r["line_number"] <= 0:
            assert r["source_code"] is None, (r["source_file"], r["line_number"])
            without += 1
            continue
        assert r["source_code"] == split_lines(path)[r["line_number"] - 1], (r["source_file"], r["line_number"])
        with_text += 1
    assert with_text > 5000 and without > 0


def test_a_client_of_the_published_schema_runs_unchanged(corpus: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(PUBLISHED_CLIENT), str(corpus / "dataset.sqlite")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["functions_with_source"] > 300 and doc["lines_with_text"] > 5000
    assert all(
        isinstance(b["repo_last_update"], int) and b["repo_last_update"] > 1_000_000_000 for b in doc["binaries"]
    )
    gnu = next(v for k, v in doc["sample"].items() if k.endswith(":gnu_style"))
    assert gnu["source_codes"].startswith("int\ngnu_style (int x)\n{")
    assert all(item["source_code"] is not None for item in doc["line_sample"])
