"""The corpus package's own logic on small synthetic datasets (SQLite, a local store): selection parsing,
licence expressions, content-addressed sampling, the split graph, families and pairs, the trivial rule in
SQL and Python, generic columns. The proofs on real builds are in tests/integration/test_corpus_*.py."""

from __future__ import annotations

import datetime
import hashlib
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from assemblage.corpus.dedup import CRT_NAMES, is_trivial, trivial_clause
from assemblage.corpus.families import family_id, sample_pairs
from assemblage.corpus.select import Selection, license_allows, parse_where, pick_sample
from assemblage.corpus.splits import SplitSpec, UnionFind, assign, parse_split, plan_components
from assemblage.db import models as m
from assemblage.db.session import init_schema, make_engine, make_sessionmaker, session_scope
from assemblage.errors import SelectionError
from assemblage.storage import LocalStore

# ------------------------------------------------------------------ a synthetic dataset


def make_dataset(root: Path, sources: dict[str, list[tuple[str, str | None]]], configs=("O0", "O2")) -> Path:
    """A dataset folder: each source built under each configuration into one binary whose functions are
    (name, pic_hash) pairs; bytes of each binary are real objects in the store."""
    root.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{root / 'dataset.sqlite'}")
    init_schema(engine)
    sessions = make_sessionmaker(engine)
    store = LocalStore(root)
    with session_scope(sessions) as s:
        rec = m.Recipe(name="synthetic", text="name: synthetic\n", sha256="0" * 64)
        s.add(rec)
        s.flush()
        run = m.Run(recipe_id=rec.id, status="finished")
        s.add(run)
        s.flush()
        for opt in configs:
            s.add(
                m.Configuration(
                    identifier=f"linux-x86_64-gcc-12-{opt}",
                    platform="linux",
                    arch="x86_64",
                    toolchain="gcc-12",
                    opt=opt,
                )
            )
        s.flush()
        cfgs = s.query(m.Configuration).all()
        for pos, (label, funcs) in enumerate(sources.items()):
            src = m.Source(
                run_id=run.id,
                position=pos,
                spec={"path": label},
                label=label,
                kind="path",
                name=label,
                status="fetched",
                license="MIT" if pos % 2 == 0 else None,
            )
            s.add(src)
            s.flush()
            for cfg in cfgs:
                b = m.Build(run_id=run.id, source_id=src.id, configuration_id=cfg.id, status="succeeded")
                s.add(b)
                s.flush()
                blob = root / "blob"
                blob.write_bytes(f"{label}/{cfg.identifier}".encode())
                sha, key = store.store_blob(blob)
                row = m.Binary(
                    file_name=label,
                    path=key,
                    platform="linux",
                    build_mode="Release",
                    optimization=cfg.opt,
                    hash=sha,
                    size=blob.stat().st_size,
                    license=src.license,
                    build_id=b.id,
                    run_id=run.id,
                    source=label,
                    source_kind="path",
                    arch="x86_64",
                    format="elf",
                    kind="executable",
                    toolchain="gcc-12",
                    config=cfg.identifier,
                    relpath=label,
                    function_count=len(funcs),
                )
                s.add(row)
                s.flush()
                for i, (name, pic) in enumerate(funcs):
                    f = m.Function(
                        binary_id=row.id,
                        name=name,
                        start=4096 + 64 * i,
                        end=4096 + 64 * i + 32,
                        size=0 if name == "_init" else 32,
                        label_source="dwarf",
                        pic_hash=pic,
                        hash=pic,
                        source_file=None if name.startswith("_") else f"/build/{label}.c",
                        decl_line=None if name.startswith("_") else 10 + i,
                    )
                    s.add(f)
                    s.flush()
                    s.add(m.Rva(function_id=f.id, start=f.start, end=f.end))
                    s.add(
                        m.Line(function_id=f.id, line_number=11 + i, rva=f.start, length=4, source_file=f.source_file)
                    )
    engine.dispose()
    (root / "blob").unlink()
    return root


def own(label: str, n: int) -> list[tuple[str, str]]:
    """n functions whose pic hashes belong to this source alone."""
    return [(f"{label}_f{i}", hashlib.sha256(f"{label}{i}".encode()).hexdigest()) for i in range(n)]


START = ("_start", "c" * 64)  # crt code: the same in every binary


# ------------------------------------------------------------------ selection


def test_where_lists_accumulate_and_ranges_parse():
    s = parse_where(["opt=O2", "opt=O3,Os", "size=100..", "functions=5", "kind=exe,dll", "has_pdb=yes"])
    assert s.opt == ["O2", "O3", "Os"] and s.bounds("size") == (100, None) and s.bounds("functions") == (5, 5)
    assert s.kind == ["executable", "shared"] and s.has_pdb is True


@pytest.mark.parametrize(
    "items,fragment",
    [
        (["optimisation=O2"], "unknown filter 'optimisation'"),
        (["opt"], "expected NAME=VALUE"),
        (["size=10..1"], "empty"),
        (["size=big"], "size"),
        (["kind=daemon"], "kind"),
        (["seed=1", "seed=2"], "given twice"),
        (["sample=3", "sample_per_config=2"], "not both"),
        (["platform=a\x01b"], "platform"),
    ],
)
def test_bad_filters_are_errors_with_their_place(items, fragment):
    with pytest.raises(SelectionError) as err:
        parse_where(items)
    assert fragment in str(err.value)


def test_selection_forbids_unknown_keys_everywhere():
    with pytest.raises(Exception, match="Extra inputs"):
        Selection.model_validate({"optimization": "O2"})


@pytest.mark.parametrize(
    "expr,allowed,ok",
    [
        ("MIT", {"mit"}, True),
        ("MIT", {"bsd-3-clause"}, False),
        ("MIT OR Apache-2.0", {"apache-2.0"}, True),
        ("MIT AND Zlib", {"mit"}, False),
        ("MIT AND Zlib", {"mit", "zlib"}, True),
        ("GPL-2.0-only", {"gpl-2.0"}, True),
        ("(MIT OR BSD-2-Clause) AND Zlib", {"bsd-2-clause", "zlib"}, True),
        ("GPL-2.0 WITH Classpath-exception-2.0", {"gpl-2.0"}, True),
        ("MIT OR", {"mit"}, False),
        ("(MIT", {"mit"}, False),
        (None, {"mit"}, False),
        (None, {"unknown"}, True),
    ],
)
def test_licence_expressions(expr, allowed, ok):
    assert license_allows(expr, allowed) is ok


def test_sampling_ignores_row_order_and_ids_and_balances():
    rows = [(i, f"{i:064x}", f"cfg{i % 3}", "src", f"bin{i}") for i in range(1, 200)]
    a = pick_sample(rows, n=10, per_config=None, seed=4)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert pick_sample(shuffled, n=10, per_config=None, seed=4) == a
    assert pick_sample(rows, n=10, per_config=None, seed=5) != a
    # renumbered rows with the same content pick the same content
    renumbered = [(i + 1000, *rest) for i, *rest in rows]
    assert pick_sample(renumbered, n=10, per_config=None, seed=4) == [i + 1000 for i in a]
    per = pick_sample(rows, n=None, per_config=4, seed=4)
    assert Counter(rows[i - 1][2] for i in per) == {"cfg0": 4, "cfg1": 4, "cfg2": 4}


# ------------------------------------------------------------------ the trivial rule


def test_trivial_rule_is_the_same_in_sql_and_python(tmp_path):
    from sqlalchemy import select

    names = sorted(CRT_NAMES) + [
        "main",
        "_ZThn8_N3geo5ShapeD1Ev",
        "_ZTv0_n24_N1AD0Ev",
        "puts@plt",
        "__x86.get_pc_thunk.bx",
        "__imp_printf",
        "_Z5startv",
        "start",
        "x_start",
        "frame_dummy2",
        "_RTC_CheckEsp",
        "a%b",
        "a_b",
    ]
    from sqlalchemy import create_engine

    engine = create_engine("sqlite://")  # no foreign keys enforced: functions alone
    f = m.Function.__table__
    f.create(engine)
    with engine.begin() as c:
        c.execute(
            f.insert(),
            [
                {"binary_id": 1, "name": n, "start": 0, "end": 1, "size": size, "label_source": "x"}
                for n in names
                for size in (0, 5)
            ],
        )
        flagged = set(c.execute(select(f.c.name, f.c.size).where(trivial_clause(f))).all())
    expect = {(n, s) for n in names for s in (0, 5) if is_trivial(n, s)}
    assert flagged == expect
    assert ("main", 5) not in flagged and ("a_b", 5) not in flagged and ("frame_dummy2", 5) not in flagged


# ------------------------------------------------------------------ splits


def test_split_specs():
    spec = parse_split("train=0.8,valid=0.1,test=0.1")
    assert spec.names == ["train", "valid", "test"] and spec.limit == pytest.approx(0.1)
    for bad, fragment in (
        ("train=0.8,test=0.1", "sum to 0.9"),
        ("Train=1", "side name"),
        ("train", "NAME=SHARE"),
        ("a=0.5,a=0.5", "named twice"),
        ("a=1.5,b=-0.5", "share"),
    ):
        with pytest.raises(SelectionError, match=fragment):
            parse_split(bad)


def test_links_merge_unless_the_component_grows_past_the_limit():
    weights = {"a": 10, "b": 10, "c": 40, "d": 40}
    links = Counter({frozenset({"a", "b"}): 3, frozenset({"b", "c"}): 1, frozenset({"a", "b", "c", "d"}): 2})
    uf, merged, cut = plan_components(weights, links, limit=0.3)
    assert uf.find("a") == uf.find("b") != uf.find("c")
    assert uf.find("c") != uf.find("d")
    assert (merged, cut) == (3, 3)
    uf, merged, cut = plan_components(weights, links, limit=1.0)
    assert len({uf.find(s) for s in weights}) == 1 and (merged, cut) == (6, 0)


def test_assignment_is_seeded_and_fills_the_sides_by_deficit():
    weights = {f"s{i}": 10 for i in range(20)}
    uf = UnionFind(weights)
    spec = SplitSpec(ratios={"train": 0.8, "valid": 0.1, "test": 0.1})
    a = assign(uf, weights, spec, seed=1)
    assert a == assign(uf, weights, spec, seed=1) and a != assign(uf, weights, spec, seed=2)
    assert Counter(a.values()) == {"train": 16, "valid": 2, "test": 2}


def test_split_on_a_dataset_merges_forks_drops_crt_and_reports(tmp_path):
    """a and a-fork share code; every source has _start; the sides must share nothing."""
    from assemblage.corpus import ExportRequest, export_corpus, open_corpus
    from tests.integration.corpus_support import read_table

    shared = own("lib", 2)
    sources = {
        "a": own("a", 3) + shared + [START],
        "a-fork": own("af", 1) + shared + [START],
        **{f"s{i}": own(f"s{i}", 4) + [START] for i in range(8)},
    }
    make_dataset(tmp_path / "ds", sources)
    out = tmp_path / "out"
    req = ExportRequest(
        split=SplitSpec(ratios={"train": 0.5, "valid": 0.25, "test": 0.25}), seed=3, formats=["parquet"]
    )
    summary = export_corpus(open_corpus(str(tmp_path / "ds")), req, out)
    report = summary.split
    assert ["a", "a-fork"] in report.merged  # the fork went with its origin
    assert report.links_merged == 2 and report.dropped_pic_hashes == 1  # _start: kept on one side only
    binaries = {b["id"]: b for b in read_table(out, "binaries")}
    sides: dict[str, set] = {}
    for f in read_table(out, "functions"):
        sides.setdefault(f["pic_hash"], set()).add(f["split"])
        assert f["split"] == binaries[f["binary_id"]]["split"]
    assert all(len(v) == 1 for v in sides.values())
    start_rows = sum(1 for f in read_table(out, "functions") if f["name"] == "_start")
    assert start_rows + sum(report.dropped_functions.values()) == 2 * len(sources)
    assert set(report.functions) == {"train", "valid", "test"} and all(report.functions.values())


# ------------------------------------------------------------------ families and pairs


def test_family_ids_are_content_hashes():
    assert family_id("src", None, 3, "f") is None and family_id("src", "a.c", None, "f") is None
    a = family_id("src", "a.c", 3, "f")
    assert a == family_id("src", "a.c", 3, "f") and 0 <= a < 2**63
    assert (
        len(
            {
                a,
                family_id("src2", "a.c", 3, "f"),
                family_id("src", "b.c", 3, "f"),
                family_id("src", "a.c", 4, "f"),
                family_id("src", "a.c", 3, "g"),
            }
        )
        == 5
    )


def test_pairs_cross_binaries_are_capped_and_seeded():
    members = [("s", "a.c", 1, "f", 100 + i, i // 2, (f"cfg{i}",)) for i in range(8)]  # 2 functions per binary
    members += [("s", "a.c", 9, "g", 200, 1, ("x",)), ("s", "a.c", 9, "g", 201, 1, ("y",))]  # one binary: no pair
    pairs = list(sample_pairs(iter(members), per_family=5, seed=1))
    assert len(pairs) == 5 and all(a[5] != b[5] and a[3] == b[3] == "f" for _, a, b in pairs)
    assert pairs == list(sample_pairs(iter(members), per_family=5, seed=1))
    assert pairs != list(sample_pairs(iter(members), per_family=5, seed=2))
    big = [("s", "a.c", 1, "f", i, i, (i,)) for i in range(400)]  # 79,800 candidate pairs: drawn, not listed
    drawn = list(sample_pairs(iter(big), per_family=7, seed=1))
    assert len(drawn) == 7 and len({(a[4], b[4]) for _, a, b in drawn}) == 7


# ------------------------------------------------------------------ generic columns


def test_every_model_column_maps_to_a_typed_arrow_column():
    import pyarrow as pa

    from assemblage.corpus.export.columns import table_columns

    for table in (m.Binary.__table__, m.Function.__table__, m.Rva.__table__, m.Line.__table__, m.Pdb.__table__):
        cols = table_columns(table)
        assert [c.name for c in cols] == [c.name for c in table.columns]
        for c in cols:
            assert c.arrow != pa.null()
    by_name = {c.name: c for c in table_columns(m.Binary.__table__)}
    assert by_name["repo_last_update_at"].arrow == pa.timestamp("us", tz="UTC")
    assert by_name["repo_last_update"].arrow == pa.int64()  # Unix seconds, as the published schema has it
    assert by_name["flags_requested"].to_sqlite(["-O2", "-g"]) == '["-O2","-g"]'


NEW_COLUMN = """
import sys
from pathlib import Path
from sqlalchemy import Column, Text
from assemblage.db import models as m
# what a later change to the models does: a new column on functions and on lines
m.Function.__table__.append_column(Column("future_text", Text))
m.Line.__table__.append_column(Column("future_note", Text))
from tests.unit.test_corpus import make_dataset, own
from assemblage.corpus import ExportRequest, export_corpus, open_corpus
root = Path(sys.argv[1])
make_dataset(root / "ds", {"a": own("a", 2), "b": own("b", 2)})
import sqlite3
db = sqlite3.connect(root / "ds" / "dataset.sqlite")
db.execute("update functions set future_text = 'int ' || name || '(void) {}'")
db.execute("update lines set future_note = '  return 0;'")
db.commit()
export_corpus(open_corpus(str(root / "ds")), ExportRequest(formats=["parquet", "sqlite"]), root / "out")
"""


def test_a_column_added_to_the_models_flows_into_the_export(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-c", NEW_COLUMN, str(tmp_path)], cwd=repo, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import sqlite3

    import pyarrow.dataset as ds

    functions = ds.dataset(tmp_path / "out" / "data" / "functions").to_table().to_pylist()
    assert {f["future_text"] for f in functions} == {f"int {f['name']}(void) {{}}" for f in functions}
    lines = ds.dataset(tmp_path / "out" / "data" / "lines").to_table().to_pylist()
    assert lines and {ln["future_note"] for ln in lines} == {"  return 0;"}
    db = sqlite3.connect(tmp_path / "out" / "dataset.sqlite")
    assert db.execute("select count(*) from functions where future_text like 'int %'").fetchone()[0] == 8


# ------------------------------------------------------------------ the export's promises on small data


def test_export_refuses_a_used_folder_and_leaves_no_partial_export(tmp_path):
    from assemblage.corpus import ExportRequest, export_corpus, open_corpus
    from assemblage.errors import ExportError

    make_dataset(tmp_path / "ds", {"a": own("a", 2)})
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("keep me")
    with pytest.raises(ExportError, match="not an empty folder"):
        export_corpus(open_corpus(str(tmp_path / "ds")), ExportRequest(), tmp_path / "used")
    assert (tmp_path / "used" / "x").read_text() == "keep me"
    # an object deleted from the store: the export fails and nothing is left
    victim = next(p for p in (tmp_path / "ds" / "objects").rglob("*") if p.is_file())
    victim.unlink()
    with pytest.raises(ExportError, match="missing from the store"):
        export_corpus(open_corpus(str(tmp_path / "ds")), ExportRequest(), tmp_path / "new")
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".new.partial-*"))


def test_export_reads_one_snapshot_and_never_writes_the_dataset(tmp_path):
    from assemblage.corpus import ExportRequest, export_corpus, open_corpus

    make_dataset(tmp_path / "ds", {"a": own("a", 2), "b": own("b", 3)})
    before = hashlib.sha256((tmp_path / "ds" / "dataset.sqlite").read_bytes()).hexdigest()
    summary = export_corpus(
        open_corpus(str(tmp_path / "ds")), ExportRequest(formats=["parquet", "sqlite"]), tmp_path / "out"
    )
    assert hashlib.sha256((tmp_path / "ds" / "dataset.sqlite").read_bytes()).hexdigest() == before
    assert summary.tables["functions"] == 10 and summary.binaries == 4
    doc = json.loads((tmp_path / "out" / "export.json").read_text())
    assert doc["tables"] == summary.tables


def test_a_dataset_built_before_a_column_existed_exports_it_empty(tmp_path):
    """Embedded datasets are made once by create_all: a later model column is missing from older ones."""
    import sqlite3

    import pyarrow.dataset as ds

    from assemblage.corpus import ExportRequest, export_corpus, open_corpus

    make_dataset(tmp_path / "ds", {"a": own("a", 2)})
    db = sqlite3.connect(tmp_path / "ds" / "dataset.sqlite")
    db.execute("alter table functions drop column source_codes")
    db.execute("alter table functions drop column size_inferred")
    db.commit()
    db.close()
    summary = export_corpus(
        open_corpus(str(tmp_path / "ds")), ExportRequest(formats=["parquet", "sqlite"]), tmp_path / "out"
    )
    assert summary.missing_columns == {"functions": ["source_codes", "size_inferred"]}
    functions = ds.dataset(tmp_path / "out" / "data" / "functions").to_table().to_pylist()
    assert len(functions) == 4
    assert {f["source_codes"] for f in functions} == {None} and {f["size_inferred"] for f in functions} == {False}


def test_whole_tables_are_copied_as_they_are_and_orphans_still_left_out(tmp_path):
    """rvas and lines are copied record by record when every function is exported and the source table has
    the export's columns in order; an orphan row (a function that does not exist) or another column order
    sends them through the join, and either way the export holds the rows whose function it exports."""
    import sqlite3

    from assemblage.corpus import ExportRequest, export_corpus, open_corpus
    from assemblage.corpus.export import run as export_run

    seen: list[tuple[str, bool]] = []
    real = export_run._Tables._whole

    def spy(self, conn, name):
        whole = real(self, conn, name)
        seen.append((name, whole))
        return whole

    def exported(out: Path, table: str) -> list[tuple]:
        db = sqlite3.connect(out / "dataset.sqlite")
        try:
            return db.execute(f"select * from {table} order by id").fetchall()
        finally:
            db.close()

    def expected(ds: Path, table: str) -> list[tuple]:
        db = sqlite3.connect(ds / "dataset.sqlite")
        try:
            cols = [c.name for c in m.Base.metadata.tables[table].columns]
            return db.execute(
                f"select {', '.join('t.' + c for c in cols)} from {table} t "
                "where t.function_id in (select id from functions) order by t.id"
            ).fetchall()
        finally:
            db.close()

    mp = pytest.MonkeyPatch()
    mp.setattr(export_run._Tables, "_whole", spy)
    try:
        clean = make_dataset(tmp_path / "clean", {"a": own("a", 3), "b": own("b", 2)})
        export_corpus(open_corpus(str(clean)), ExportRequest(formats=["sqlite"]), tmp_path / "o1")
        assert seen == [("rvas", True), ("lines", True)]
        for table in ("rvas", "lines"):
            assert exported(tmp_path / "o1", table) == expected(clean, table) and expected(clean, table)
        db = sqlite3.connect(tmp_path / "o1" / "dataset.sqlite")  # the indexes came along with the rows
        try:
            assert db.execute("pragma integrity_check").fetchall() == [("ok",)]
            for table in ("rvas", "lines"):
                plan = db.execute(f"explain query plan select id from {table} where function_id = 3").fetchall()
                assert f"USING INDEX ix_{table}_function_id" in str(plan) or "COVERING INDEX" in str(plan), plan
                n = db.execute(f"select count(*) from {table} indexed by ix_{table}_function_id where function_id > 0")
                assert n.fetchone()[0] == len(expected(clean, table))
        finally:
            db.close()

        orphan = make_dataset(tmp_path / "orphan", {"a": own("a", 3)})
        db = sqlite3.connect(orphan / "dataset.sqlite")  # foreign keys are off on a plain connection
        db.execute("insert into lines (function_id, line_number, rva, length) values (999999, 1, 2, 3)")
        db.commit()
        db.close()
        seen.clear()
        export_corpus(open_corpus(str(orphan)), ExportRequest(formats=["sqlite"]), tmp_path / "o2")
        assert seen == [("rvas", True), ("lines", False)]
        assert exported(tmp_path / "o2", "lines") == expected(orphan, "lines")
        assert 999999 not in {row[1] for row in exported(tmp_path / "o2", "lines")}
        # with Parquet too: the helper process started on the whole dataset is stopped, its orphan row unused
        import pyarrow.dataset as pads

        export_corpus(open_corpus(str(orphan)), ExportRequest(), tmp_path / "o2p")
        parquet_lines = pads.dataset(tmp_path / "o2p" / "data" / "lines").to_table().to_pylist()
        assert [tuple(r.values()) for r in parquet_lines] == expected(orphan, "lines")

        moved = make_dataset(tmp_path / "moved", {"a": own("a", 3)})
        db = sqlite3.connect(moved / "dataset.sqlite")  # a column added by a migration lands last
        db.execute("alter table lines drop column source_file")
        db.execute("alter table lines add column source_file text")
        db.execute("update lines set source_file = 'f' || id")
        db.commit()
        db.close()
        seen.clear()
        export_corpus(open_corpus(str(moved)), ExportRequest(formats=["sqlite"]), tmp_path / "o3")
        assert seen == [("rvas", True), ("lines", False)]
        assert exported(tmp_path / "o3", "lines") == expected(moved, "lines")
        assert {row[5] for row in exported(tmp_path / "o3", "lines")} == {
            f"f{row[0]}" for row in expected(moved, "lines")
        }

        seen.clear()  # a selection: not every function is exported, so nothing is copied whole
        export_corpus(
            open_corpus(str(clean)),
            ExportRequest(formats=["sqlite"], where=parse_where(["source=a"])),
            tmp_path / "o4",
        )
        assert seen == []
        lines = exported(tmp_path / "o4", "lines")
        assert lines and len(lines) < len(expected(clean, "lines"))
    finally:
        mp.undo()


def test_objects_are_hard_links_to_the_store_checked_and_copied_when_linking_fails(tmp_path, monkeypatch):
    import errno
    import os

    from assemblage.corpus import ExportRequest, export_corpus, open_corpus
    from assemblage.errors import ExportError

    ds = make_dataset(tmp_path / "ds", {"a": own("a", 2), "b": own("b", 1)})
    store = {p.name: p for p in (ds / "objects").rglob("*") if p.is_file()}
    export_corpus(open_corpus(str(ds)), ExportRequest(formats=["files"]), tmp_path / "linked")
    linked = {p.name: p for p in (tmp_path / "linked" / "objects").rglob("*") if p.is_file()}
    assert len(linked) == 4 and all(os.path.samefile(p, store[name]) for name, p in linked.items())

    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    export_corpus(open_corpus(str(ds)), ExportRequest(formats=["files"]), tmp_path / "copied")
    copied = {p.name: p for p in (tmp_path / "copied" / "objects").rglob("*") if p.is_file()}
    assert copied.keys() == linked.keys()
    assert all(not os.path.samefile(p, store[n]) and p.read_bytes() == store[n].read_bytes() for n, p in copied.items())
    monkeypatch.undo()

    victim = next(iter(store.values()))  # a linked object is read and hashed like a copied one
    victim.write_bytes(b"not the original")
    with pytest.raises(ExportError, match="corrupt"):
        export_corpus(open_corpus(str(ds)), ExportRequest(formats=["files"]), tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.partial-*"))


def test_charts_are_deterministic_pngs_with_ticks_bars_and_a_legend(tmp_path):
    from PIL import Image

    from assemblage.corpus.export.charts import bar_chart, nice_ticks

    assert nice_ticks(0) == (1, [0, 1])
    assert nice_ticks(4) == (4, [0, 1, 2, 3, 4])
    assert nice_ticks(10_032) == (12_000, [0, 2000, 4000, 6000, 8000, 10_000, 12_000])
    assert nice_ticks(7) == (7, list(range(8))) and nice_ticks(9) == (10, [0, 2, 4, 6, 8, 10])
    labels = ["linux-x86_64-gcc-12-O0", "x" * 60, "linux-x86_64-clang-19-O2"]
    series = [("succeeded", [3, 0, 5]), ("failed", [1, 2, 0])]
    colours = {"succeeded": "#228833", "failed": "#ee6677"}
    a = bar_chart(tmp_path / "a.png", "Build outcomes", labels, series, "builds", colours)
    b = bar_chart(tmp_path / "b.png", "Build outcomes", labels, series, "builds", colours)
    assert a.read_bytes() == b.read_bytes()
    data = a.read_bytes()
    chunks, pos = [], 8  # no time, text or software chunk: the same numbers give the same bytes
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append(data[pos + 4 : pos + 8].decode())
        pos += 12 + n
    assert set(chunks) == {"IHDR", "IDAT", "IEND"}
    img = Image.open(a).convert("RGB")
    assert img.size == (800, 210)  # 30 px a row, 120 px of title and axis
    colours_seen = {c for _, c in img.getcolors(1 << 20)}
    assert {(0x22, 0x88, 0x33), (0xEE, 0x66, 0x77)} <= colours_seen  # both series are drawn
    single = bar_chart(tmp_path / "c.png", "Functions", ["a"] * 20, [("functions", list(range(20)))], "functions")
    assert Image.open(single).size == (800, 720)


def test_parquet_row_groups_are_bounded_in_rows_and_in_bytes(tmp_path):
    """Wide rows (functions with their source text) close a row group before 65,536 rows: memory stays flat."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from assemblage.corpus.export.parquet import TableWriter

    schema = pa.schema([pa.field("id", pa.int64()), pa.field("text", pa.string())])
    wide = TableWriter(tmp_path / "wide", schema, row_group=1000, row_group_bytes=64 << 10)
    narrow = TableWriter(tmp_path / "narrow", schema, row_group=1000, row_group_bytes=64 << 10)
    for start in range(0, 3000, 250):
        ids = list(range(start, start + 250))
        wide.write(pa.record_batch([pa.array(ids), pa.array(["x" * 1000] * 250)], schema=schema))
        narrow.write(pa.record_batch([pa.array(ids), pa.array(["x"] * 250)], schema=schema))
    wide.close()
    narrow.close()
    for folder, most in (("wide", 250), ("narrow", 1000)):
        meta = pq.ParquetFile(tmp_path / folder / "part-00000.parquet").metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        assert sum(sizes) == 3000 and max(sizes) == most, (folder, sizes)
        assert pq.read_table(tmp_path / folder).column("id").to_pylist() == list(range(3000))


@pytest.mark.parametrize("reader", ["batches", "adbc"])
@pytest.mark.parametrize("nulls", [0, 5, 40_000])
def test_sqlite_to_parquet_types_columns_whatever_the_first_batch_holds(tmp_path, nulls, reader):
    """Either reader gives the models' types: the ADBC driver types a column by its first batch, so a text
    column NULL all through it (40,000 NULLs, batches of 16,384) must still read as text, and one that is
    not needs no placeholder row; the C reader reads each column as its type says, dates and JSON as text
    and flags as integers, cast afterwards."""
    import sqlite3

    import pyarrow as pa
    import pyarrow.parquet as pq

    from assemblage.corpus.export.parquet import TableWriter, sqlite_to_parquet

    path = tmp_path / "t.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name VARCHAR(20), meta JSON, at DATETIME, x REAL, ok BOOLEAN, "
        "day DATE)"
    )
    rows = [
        (i, None if i < nulls else f"n{i}", None if i < nulls else '{"k":1}', "2026-11-30 12:00:00.000000", 1)
        + (i % 3 == 0, None if i < nulls else "2026-11-30")
        for i in range(50_000)
    ]
    db.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("name", pa.string()),
            ("meta", pa.string()),
            ("at", pa.timestamp("us", tz="UTC")),
            ("x", pa.float64()),
            ("ok", pa.bool_()),
            ("day", pa.date32()),
        ]
    )
    writer = TableWriter(tmp_path / "out", schema)
    cols = [(f't."{n}"', n) for n in schema.names]
    n = sqlite_to_parquet(path, cols, schema, 'FROM "t" t', writer, text_columns=frozenset({"name"}), reader=reader)
    writer.close()
    table = pq.read_table(tmp_path / "out" / "part-00000.parquet")
    assert n == 50_000 and table.schema == schema
    assert table.column("name").to_pylist() == [r[1] for r in rows]
    assert table.column("meta").to_pylist() == [r[2] for r in rows]
    assert table.column("x").to_pylist() == [1.0] * 50_000
    assert table.column("at")[0].as_py().isoformat() == "2026-11-30T12:00:00+00:00"
    assert table.column("ok").to_pylist() == [r[5] for r in rows]
    assert table.column("day").to_pylist() == [None if r[6] is None else datetime.date(2026, 11, 30) for r in rows]


def test_the_helpers_column_check_uses_sqlites_own_affinities():
    """helper.affinity names the affinity SQLite gives a declared type: checked against what SQLite stores."""
    import sqlite3

    from assemblage.corpus.export.helper import affinity

    declared = ["INTEGER", "BIGINT", "VARCHAR(20)", "TEXT", "CLOB", "BLOB", "", "REAL", "DOUBLE", "FLOAT", "DATETIME"]
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE t ({', '.join(f'c{i} {d}' for i, d in enumerate(declared))})")
    db.execute(f"INSERT INTO t VALUES ({', '.join('12' for _ in declared)})")  # an integer
    db.execute(f"INSERT INTO t VALUES ({', '.join(repr('12') for _ in declared)})")  # the same as text
    stored = db.execute(f"SELECT {', '.join(f'typeof(c{i})' for i in range(len(declared)))} FROM t").fetchall()
    seen = {"integer,integer": {"INTEGER", "NUMERIC"}, "text,text": {"TEXT"}, "integer,text": {"BLOB"}}
    seen["real,real"] = {"REAL"}
    for i, d in enumerate(declared):
        assert affinity(d) in seen[f"{stored[0][i]},{stored[1][i]}"], d
    assert [affinity(d) for d in ("BIGINT", "VARCHAR(20)", "", "DOUBLE", "DATETIME")] == [
        "INTEGER",
        "TEXT",
        "BLOB",
        "REAL",
        "NUMERIC",
    ]


def test_the_helper_process_says_what_it_needs_when_started_by_hand():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "assemblage.corpus.export.helper"], input="", capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "reads its jobs, JSON lines, on standard input" in done.stderr


def test_a_value_of_another_type_than_its_column_is_a_clear_export_error(tmp_path):
    """A hand-edited dataset: text where lines.line_number is an integer. The helper's reader refuses it
    (the export then reads its own file), the export's reader too: exit 12, naming table, column and row,
    and no output folder left behind."""
    import sqlite3

    ds = make_dataset(tmp_path / "ds", {"a": own("a", 3)})
    db = sqlite3.connect(ds / "dataset.sqlite")
    db.execute("update lines set line_number = 'twelve' where id = (select min(id) + 1 from lines)")
    db.commit()
    db.close()
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "assemblage.cli", "export", str(ds), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 12, r.stderr
    assert "cannot write data/lines: in the dataset's lines table, column 2 (line_number) of row 2 holds text" in (
        " ".join(r.stderr.split())
    )
    assert not out.exists()
