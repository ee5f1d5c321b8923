"""The spine end to end: `assemblage build` on real sources with real compilers, checked by independent tools."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, need

pytestmark = pytest.mark.integration

CONFIGS = [f"linux-x86_64-{tc}-{opt}" for tc in ("gcc-12", "clang-19") for opt in ("O0", "O2")]


def assemblage(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assemblage.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=900
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    need("gcc-12", "clang-19", "llvm-dwarfdump-19", "nm")
    root = tmp_path_factory.mktemp("corpus")
    recipe = root / "recipe.yaml"
    recipe.write_text(f"""
name: spine-test
sources:
  - path: {SAMPLES / "calc"}
  - path: {SAMPLES / "shapes"}
  - path: {SAMPLES / "broken"}
matrix:
  toolchain: [gcc-12, clang-19]
  opt: [O0, O2]
outputs:
  stripped: true
""")
    r = assemblage("build", str(recipe), "--out", str(root / "out"), "--jobs", "2")
    # the broken sample fails on purpose: the run finished, some builds did not succeed
    assert r.returncode == 9, r.stdout + r.stderr
    (root / "stdout.txt").write_text(r.stdout)
    return root


def db(corpus: Path) -> sqlite3.Connection:
    con = sqlite3.connect(corpus / "out" / "dataset.sqlite")
    con.row_factory = sqlite3.Row
    return con


def test_summary_names_counts_and_dataset(corpus: Path) -> None:
    out = (corpus / "stdout.txt").read_text()
    assert "Builds by status and reason" in out
    assert "compile_error" in out
    assert "Coverage" in out
    assert "dataset.sqlite" in out
    assert re.search(r"\d+ binaries, \d+ functions", out)


def test_every_configuration_produced_binaries(corpus: Path) -> None:
    con = db(corpus)
    rows = con.execute("""
        select s.name, c.identifier, b.status, b.reason, count(x.id) n
        from builds b join sources s on s.id = b.source_id join configurations c on c.id = b.configuration_id
        left join binaries x on x.build_id = b.id group by b.id""").fetchall()
    cells = {(r["name"], r["identifier"]): r for r in rows}
    assert len(cells) == 3 * len(CONFIGS)
    for cfg in CONFIGS:
        assert cells[("calc", cfg)]["status"] == "succeeded" and cells[("calc", cfg)]["n"] == 1
        assert cells[("shapes", cfg)]["status"] == "succeeded" and cells[("shapes", cfg)]["n"] == 2
        assert (cells[("broken", cfg)]["status"], cells[("broken", cfg)]["reason"]) == ("failed", "compile_error")


def test_labels_match_the_producer_read_by_llvm_dwarfdump(corpus: Path) -> None:
    con = db(corpus)
    rows = con.execute("select path, optimization, opt_observed, opt_mismatch, config from binaries").fetchall()
    assert rows
    for r in rows:
        binary = corpus / "out" / r["path"]
        dump = subprocess.run(["llvm-dwarfdump-19", "--debug-info", str(binary)], capture_output=True, text=True).stdout
        producers = [p for p in re.findall(r'DW_AT_producer\s+\("([^"]*)"\)', dump) if "-O" in p]
        assert producers, r["config"]
        levels = {re.findall(r"-O(\S*)", p)[-1] for p in producers}
        assert levels == {r["optimization"][1:]}, (r["config"], levels)
        assert r["opt_observed"] == r["optimization"]
        assert r["opt_mismatch"] == 0


def nm_functions(binary: Path) -> dict[int, tuple[str, int]]:
    out = subprocess.run(["nm", "--defined-only", "-S", str(binary)], capture_output=True, text=True, check=True).stdout
    funcs = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tT":
            funcs[int(parts[0], 16)] = (parts[3], int(parts[1], 16))
    return funcs


def test_function_boundaries_and_names_match_nm(corpus: Path) -> None:
    con = db(corpus)
    for b in con.execute("select id, path, config from binaries").fetchall():
        binary = corpus / "out" / b["path"]
        truth = nm_functions(binary)
        ours = con.execute(
            "select name, linkage_name, start, end, size from functions where binary_id = ?", (b["id"],)
        ).fetchall()
        assert ours, b["config"]
        matched = 0
        for f in ours:
            if f["start"] in truth:
                name, size = truth[f["start"]]
                if f["end"] - f["start"] != f["size"] and name.endswith(".cold"):
                    # a split function starts at its cold part, which gcc names NAME.cold
                    name = name[: -len(".cold")]
                assert name in (f["name"], f["linkage_name"]), (b["config"], f["name"], name)
                if f["end"] - f["start"] == f["size"]:  # contiguous
                    assert f["size"] == size, (b["config"], f["name"])
                matched += 1
        # every function of our own sources with a symbol is found
        own = {
            n for a, (n, s) in truth.items() if n in {"main", "evaluate", "fibonacci", "parse_expression", "free_tree"}
        }
        ours_names = {f["name"] for f in ours}
        assert own <= ours_names, (b["config"], own - ours_names)
        assert matched >= len(own)


def test_static_and_recursive_functions_are_labelled(corpus: Path) -> None:
    con = db(corpus)
    names = {
        r[0]
        for r in con.execute(
            "select f.name from functions f join binaries b on b.id = f.binary_id "
            "where b.file_name = 'calc' and b.optimization = 'O0'"
        )
    }
    assert {"parse_sum", "parse_primary", "skip_spaces", "apply", "fibonacci", "evaluate", "main"} <= names


def test_cpp_methods_and_templates_are_labelled(corpus: Path) -> None:
    con = db(corpus)
    rows = con.execute(
        "select f.name, f.linkage_name, f.demangled from functions f join binaries b on b.id = f.binary_id "
        "where b.file_name = 'libgeometry.so' and b.optimization = 'O0'"
    ).fetchall()
    demangled = " ".join(r["demangled"] or r["name"] for r in rows)
    assert "geo::Circle::area" in demangled
    assert "geo::Registry::total_area" in demangled
    assert "sum_of<double>" in demangled


def test_lines_and_rvas_belong_to_functions(corpus: Path) -> None:
    con = db(corpus)
    bad = con.execute("""
        select count(*) from lines l join functions f on f.id = l.function_id
        where l.rva < f.start or l.rva >= f.end""").fetchone()[0]
    assert bad == 0
    assert con.execute("select count(*) from lines").fetchone()[0] > 100
    assert (
        con.execute(
            "select count(*) from functions f left join rvas r on r.function_id = f.id where r.id is null"
        ).fetchone()[0]
        == 0
    )


def test_binaries_are_stored_once_by_sha256_with_stripped_copies(corpus: Path) -> None:
    import hashlib

    con = db(corpus)
    for r in con.execute("select path, hash, stripped_hash, stripped_path from binaries").fetchall():
        data = (corpus / "out" / r["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["hash"]
        assert r["path"].endswith(r["hash"])
        stripped = corpus / "out" / r["stripped_path"]
        assert stripped.exists() and stripped.stat().st_size < len(data)
        syms = subprocess.run(["nm", str(stripped)], capture_output=True, text=True)
        assert "no symbols" in syms.stderr
    objects = [p for p in (corpus / "out" / "objects").rglob("*") if p.is_file() and not p.name.endswith(".json")]
    distinct = con.execute("select count(distinct hash) + count(distinct stripped_hash) from binaries").fetchone()[0]
    assert len(objects) == distinct


def test_build_logs_are_kept(corpus: Path) -> None:
    con = db(corpus)
    for key, status in con.execute("select log_key, status from builds").fetchall():
        text = (corpus / "out" / key).read_text()
        assert "# assemblage build" in text
        if status == "failed":
            assert "error" in text


def test_rerun_reuses_finished_builds(corpus: Path) -> None:
    r = assemblage("build", str(corpus / "recipe.yaml"), "--out", str(corpus / "out"), "--jobs", "2")
    assert r.returncode == 9, r.stderr  # the reused failures of the broken sample are still failures
    con = db(corpus)
    runs = con.execute("select max(id) from runs").fetchone()[0]
    rows = con.execute("select status, reused_from_id from builds where run_id = ?", (runs,)).fetchall()
    assert len(rows) == 3 * len(CONFIGS)
    assert all(r["reused_from_id"] is not None for r in rows)
    # nothing doubled
    assert con.execute("select count(*) from binaries where run_id = ?", (runs,)).fetchone()[0] == 0
    assert "reused" in r.stdout


def test_recipe_check_exit_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nsources:\n  - git: https://example.invalid/r\n    ref: -x\nmatrix: {toolchain: [gcc-12]}\n"
    )
    r = assemblage("recipe", "check", str(bad))
    assert r.returncode == 2
    assert "sources[0].ref" in r.stderr


def test_summary_as_json_and_again_by_report(corpus: Path) -> None:
    """`build --json` and `report --json` print the same summary, which agrees with the dataset."""
    out = corpus / "out"
    again = assemblage("report", str(out), "--run", "1", "--json")
    assert again.returncode == 9, again.stderr
    doc = json.loads(again.stdout)
    con = db(corpus)
    assert doc["run"] == 1 and doc["recipe"] == "spine-test"
    by_status = dict(con.execute("select status, count(*) from builds where run_id = 1 group by status").fetchall())
    assert {k: v for k, v in doc["builds"].items() if k != "total"} == by_status
    assert doc["builds"]["total"] == 3 * len(CONFIGS)
    assert doc["binaries"] == con.execute("select count(*) from binaries where run_id = 1").fetchone()[0]
    assert (
        doc["functions"]
        == con.execute(
            "select count(*) from functions f join binaries b on b.id = f.binary_id where b.run_id = 1"
        ).fetchone()[0]
    )
    assert {"status": "failed", "reason": "compile_error", "builds": len(CONFIGS)} in doc["reasons"]
    assert {(c["source"], c["config"]) for c in doc["cells"]} == {
        (s, c) for s in ("calc", "shapes", "broken") for c in CONFIGS
    }
    assert doc["dataset"].endswith("dataset.sqlite")
    # --allow-failures: a script that accepts partial runs gets 0
    ok = assemblage("report", str(out), "--run", "1", "--allow-failures")
    assert ok.returncode == 0 and "Builds by status and reason" in ok.stdout
    missing = assemblage("report", str(out), "--run", "999")
    assert missing.returncode == 1 and "no run 999" in missing.stderr and "Traceback" not in missing.stderr


def test_build_json_of_a_clean_run_exits_0(tmp_path: Path) -> None:
    need("gcc-12")
    recipe = tmp_path / "ok.yaml"
    recipe.write_text(
        f"name: ok\nsources: [{{path: {SAMPLES / 'calc'}}}]\nmatrix: {{toolchain: [gcc-12], opt: [O1]}}\n"
    )
    r = assemblage("build", str(recipe), "--out", str(tmp_path / "out"), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout is the JSON object and nothing else
    assert doc["builds"] == {"total": 1, "succeeded": 1}
    assert doc["binaries"] >= 1 and doc["opt_mismatches"] == 0
    assert doc["cells"][0]["config"] == "linux-x86_64-gcc-12-O1"


def test_observed_flags_are_clean(corpus: Path) -> None:
    """flags_observed: each switch once, values with their switch, the configuration's level present."""
    con = db(corpus)
    rows = con.execute("select config, flags_observed, producer from binaries where format = 'elf'").fetchall()
    assert rows
    for row in rows:
        flags = json.loads(row["flags_observed"])
        assert flags, row["config"]
        assert len(flags) == len(set(flags)), flags
        assert not {"-D", "-U", "-I", "-include"} & set(flags), flags
        assert f"-{row['config'].rsplit('-', 1)[1]}" in flags, (row["config"], flags)


def test_start_up_symbols_get_their_extent(corpus: Path) -> None:
    """crt code whose symbols say size 0 gets a real extent and hashes; nothing is left at size 0."""
    con = db(corpus)
    rows = con.execute(
        "select f.name, f.size, f.hash, f.size_inferred from functions f"
        " join binaries b on b.id = f.binary_id where b.format = 'elf'"
    ).fetchall()
    inferred = {r["name"] for r in rows if r["size_inferred"]}
    assert {"_init", "deregister_tm_clones", "frame_dummy"} <= inferred, inferred
    assert all(r["size"] > 0 and r["hash"] for r in rows if r["size_inferred"])
    assert not [r["name"] for r in rows if r["size"] == 0], "functions left without an extent"


def test_a_binary_left_twice_by_a_build_is_analysed_once(tmp_path: Path) -> None:
    """lz4 leaves ``lz4`` and ``programs/lz4``: the second copy takes the first one's analysis (same rows)."""
    need("gcc-12", "nm")
    src = tmp_path / "twice"
    src.mkdir()
    (src / "twice.c").write_text(
        "static int sq(int x) { return x * x; }\nint main(int argc, char **argv) { (void)argv; return sq(argc); }\n"
    )
    (src / "Makefile").write_text(
        "all:\n\t$(CC) $(CFLAGS) -o twice twice.c\n\tmkdir -p programs && cp -p twice programs/twice\n"
    )
    recipe = tmp_path / "twice.yaml"
    recipe.write_text(f"name: twice\nsources: [{{path: {src}}}]\nmatrix: {{toolchain: [gcc-12], opt: [O0]}}\n")
    r = assemblage("build", str(recipe), "--out", str(tmp_path / "out"), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    con = sqlite3.connect(tmp_path / "out" / "dataset.sqlite")
    rows = con.execute("select relpath, hash, function_count from binaries order by relpath").fetchall()
    assert [r[0] for r in rows] == ["programs/twice", "twice"] and rows[0][1] == rows[1][1]
    names = [
        sorted(
            n
            for (n,) in con.execute(
                "select f.name from functions f join binaries b on b.id = f.binary_id where b.relpath = ?", (rel,)
            )
        )
        for rel, _, _ in rows
    ]
    assert names[0] == names[1] and {"main", "sq"} <= set(names[0]) and rows[0][2] == rows[1][2] == len(names[0])
    (key,) = con.execute("select log_key from builds").fetchone()
    assert "analysed once" in (tmp_path / "out" / key).read_text()


def test_ground_truth_goes_straight_to_the_driver_and_finished_at_follows_it(tmp_path: Path, monkeypatch) -> None:
    """The rows of functions, ranges, lines and inlines skip the ORM's per-row bulk path (most of a build's
    storage time), hold what the analysis found, and ``finished_at`` comes after they are written."""
    need("gcc-12")
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from assemblage.binaries import analyze_file
    from assemblage.db import models as m
    from assemblage.pipeline import steps
    from assemblage.pipeline.embedded import open_dataset, run_recipe
    from assemblage.recipes import parse_recipe

    orm_inserts: list[str] = []

    def on_orm(state) -> None:
        if state.is_insert:
            orm_inserts.append(state.statement.table.name)

    written: list = []
    real_write = steps._write_binaries
    monkeypatch.setattr(steps, "_write_binaries", lambda *a, **k: (real_write(*a, **k), written.append(m.utcnow()))[0])
    doc = {
        "name": "rows",
        "sources": [{"path": str(SAMPLES / "shapes")}],
        "matrix": {"toolchain": ["gcc-12"], "opt": ["O2"]},
    }
    dataset = open_dataset(tmp_path / "out")
    event.listen(Session, "do_orm_execute", on_orm)
    try:
        run_recipe(dataset, parse_recipe(doc), json.dumps(doc), tmp_path, jobs=1)
    finally:
        event.remove(Session, "do_orm_execute", on_orm)
    assert not {"functions", "rvas", "lines", "inlines"} & set(orm_inserts), orm_inserts
    con = sqlite3.connect(dataset.db_path)
    ((status, finished),) = con.execute("select status, finished_at from builds").fetchall()
    assert status == "succeeded" and len(written) == 1
    assert finished >= written[0].replace(tzinfo=None).isoformat(" "), (finished, written)
    binaries = con.execute("select id, path from binaries").fetchall()
    assert binaries
    for bid, key in binaries:
        a = analyze_file(tmp_path / "out" / key)
        count = lambda sql, bid=bid: con.execute(sql, (bid,)).fetchone()[0]  # noqa: E731
        assert count("select count(*) from functions where binary_id = ?") == len(a.functions)
        assert count(
            "select count(*) from rvas r join functions f on f.id = r.function_id where f.binary_id = ?"
        ) == sum(len(f.ranges) or 1 for f in a.functions)
        assert (
            count("select count(*) from lines l join functions f on f.id = l.function_id where f.binary_id = ?")
            == sum(len(f.lines) for f in a.functions)
            > 0
        )
        assert count("select count(*) from inlines where binary_id = ?") == sum(len(i.ranges) for i in a.inlinings)
        assert (
            count(
                "select count(*) from lines l join functions f on f.id = l.function_id"
                " where f.binary_id = ? and l.source_code is not null"
            )
            > 0
        )


def test_builds_of_one_source_lex_its_files_once(tmp_path: Path, monkeypatch) -> None:
    """Every configuration of a source cuts its functions' text from files lexed once, with the same text."""
    need("gcc-12")
    from assemblage.pipeline import steps
    from assemblage.pipeline.embedded import open_dataset, run_recipe
    from assemblage.recipes import parse_recipe
    from assemblage.sources import text

    lexed: list[int] = []
    real_init = text.SourceFile.__init__

    def counting(self, source: str) -> None:
        lexed.append(1)
        real_init(self, source)

    monkeypatch.setattr(text.SourceFile, "__init__", counting)
    monkeypatch.setattr(steps, "_TEXT_CACHES", {})
    doc = {
        "name": "lex-once",
        "sources": [{"path": str(SAMPLES / "calc")}],
        "matrix": {"toolchain": ["gcc-12"], "opt": ["O0", "O1", "O2"]},
    }
    dataset = open_dataset(tmp_path / "out")
    run_recipe(dataset, parse_recipe(doc), json.dumps(doc), tmp_path, jobs=1)
    con = sqlite3.connect(dataset.db_path)
    files = {f for (f,) in con.execute("select distinct source_file from functions where source_codes is not null")}
    assert files and len(lexed) <= len(files) + 2, (len(lexed), files)  # + headers read for their functions' lines
    texts: dict[str, set] = {}
    for name, code in con.execute("select f.name, f.source_codes from functions f where f.name = 'main'"):
        texts.setdefault(name, set()).add(code)
    assert texts["main"] and len(texts["main"]) == 1 and None not in texts["main"]
    assert con.execute("select count(distinct b.config) from binaries b").fetchone()[0] == 3
