"""`assemblage verify` on real runs: the sample projects and Debian's zlib at two configurations,
Windows PE + PDB builds, and a project that is not reproducible on purpose (its differences named).

The run and its verification are built once per module (the compiles dominate).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC
from pathlib import Path

import pytest
from sqlalchemy import select

from assemblage.db import models as m
from assemblage.pipeline.embedded import open_dataset, run_recipe
from assemblage.pipeline.lock import lock_for_run
from assemblage.pipeline.verify import verify_run
from assemblage.recipes.load import parse_recipe_text
from tests.conftest import REPO, need

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-c", "from assemblage.cli.main import main; main()"]
LAST_LINE = re.compile(r"^(\d+) of (\d+) binaries bit-identical \((\d+(?:\.\d)?)%\)$")

SAMPLES_AND_ZLIB = """\
name: repro-samples
sources:
  - path: recipes/samples/calc
  - path: recipes/samples/shapes
  - path: recipes/samples/wordfreq
  - path: recipes/samples/vecmath
  - path: recipes/samples/broken
  - debian: zlib
    suite: bookworm
matrix:
  platform: [linux]
  arch: [x86_64]
  toolchain: [gcc-12, clang-19]
  opt: [O2, O0]
exclude:
  - {toolchain: gcc-12, opt: O0}
  - {toolchain: clang-19, opt: O2}
"""

# Not reproducible on purpose: the Makefile writes the wall-clock time and a fresh
# temporary name into the program (what verify must find and explain).
NONDET_MAKEFILE = """\
all: stamp
stamp: stamp.c
\t$(CC) -DWHEN="\\"$$(date -u +%H:%M:%S.%N)\\"" -DTMP="\\"$$(mktemp -u /tmp/ccXXXXXX)\\"" -o stamp stamp.c
"""
NONDET_C = "#include <stdio.h>\nint main(void) { puts(WHEN); puts(TMP); return 0; }\n"


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    need("gcc-12", "clang-19", "cmake", "meson", "autoreconf")
    out = tmp_path_factory.mktemp("repro") / "dataset"
    dataset = open_dataset(out)
    run_id = run_recipe(dataset, parse_recipe_text(SAMPLES_AND_ZLIB), SAMPLES_AND_ZLIB, REPO, jobs=2)
    return dataset, run_id


def test_the_lock_pins_every_source_and_records_each_build(built):
    dataset, run_id = built
    with dataset.context.sessions() as s:
        lock = lock_for_run(s, None)  # the latest run
        zlib = s.scalar(select(m.Source).where(m.Source.run_id == run_id, m.Source.kind == "debian"))
        changelog = zlib.last_update.replace(tzinfo=zlib.last_update.tzinfo or UTC)
    assert lock.run.id == run_id
    by_kind = {src.kind: src for src in lock.sources}
    assert by_kind["path"].pin.startswith("tree:") and by_kind["path"].source_date_epoch == 315532800
    deb = by_kind["debian"]
    assert deb.version and deb.pinned["version"] == deb.version  # rebuild fetches this exact version
    assert deb.source_date_epoch == int(changelog.timestamp())  # from debian/changelog
    ok = [b for b in lock.builds if b.status == "succeeded"]
    assert len(ok) >= 10 and all(b.settings and b.toolchain is not None and b.binaries for b in ok)
    for b in ok:
        tc = lock.toolchains[b.toolchain]
        assert b.config.split("-")[2] in tc.toolchain and all(t.version for t in tc.tools)
        compiler_pkg = f"{tc.toolchain.split('-')[0]}-{tc.toolchain.split('-')[1]}"
        assert tc.packages[compiler_pkg], tc.packages  # the Debian version of the compiler package
        assert b.settings.env["SOURCE_DATE_EPOCH"] == str(lock.source(b.source).source_date_epoch)
        assert b.settings.env["TZ"] == "UTC" and b.settings.umask == "0022" and b.settings.build_path == "/build/src"
        assert any(f.startswith("-ffile-prefix-map=") for f in b.settings.wrapper_flags)
    gcc = next(t for t in lock.toolchains if t.toolchain == "gcc-12")
    version = subprocess.run(["gcc-12", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    dpkg = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "gcc-12"], capture_output=True, text=True).stdout
    assert gcc.tools[0].version == version and gcc.packages["gcc-12"] == dpkg


def test_verify_rebuilds_every_build_bit_for_bit(built):
    dataset, run_id = built
    report = verify_run(dataset, run_id=run_id, jobs=2)
    assert report.builds >= 10 and report.compared >= 14
    # bit-identical, or every differing section named with a cause (never "unknown")
    for d in report.differences:
        assert d.status == "differs" and d.sections, d
        assert all(s["cause"] != "unknown" for s in d.sections), d
    assert report.identical == report.compared, [d.to_dict() for d in report.differences]
    with dataset.context.sessions() as s:
        v = s.get(m.Verification, report.verification_id)
        assert (v.run_id, v.compared, v.identical, v.builds) == (
            run_id,
            report.compared,
            report.identical,
            report.builds,
        )


def test_cli_verify_sample_ends_with_the_share_and_json_has_the_contract(built):
    dataset, run_id = built
    r = cli("verify", str(dataset.root), "--run", str(run_id), "--sample", "3", "--seed", "7", "--jobs", "2")
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    mm = LAST_LINE.match(last)
    assert mm and mm.group(1) == mm.group(2) and mm.group(3) == "100.0", r.stdout
    j = cli("verify", str(dataset.root), "--sample", "3", "--seed", "7", "--jobs", "2", "--json")
    assert j.returncode == 0, j.stderr
    doc = json.loads(j.stdout)
    assert doc["builds"] == 3 and doc["identical"] == doc["compared"] == int(mm.group(2))
    assert doc["differences"] == [] and doc["seed"] == 7
    other = json.loads(cli("verify", str(dataset.root), "--sample", "3", "--seed", "8", "--json", "-j", "2").stdout)
    with dataset.context.sessions() as s:
        stored = list(s.scalars(select(m.Verification).where(m.Verification.seed.in_((7, 8)))))
    assert len(stored) == 3 and {v.sample for v in stored} == {3}
    assert other["builds"] == 3


def test_a_project_that_is_not_reproducible_gets_its_differences_named_and_stored(tmp_path):
    need("gcc-12")
    src = tmp_path / "nondet"
    src.mkdir()
    (src / "Makefile").write_text(NONDET_MAKEFILE)
    (src / "stamp.c").write_text(NONDET_C)
    text = (
        "name: nondet\nsources:\n  - path: nondet\n  - path: "
        + str(REPO / "recipes/samples/calc")
        + "\nmatrix:\n  toolchain: [gcc-12]\n  opt: [O2]\n"
    )
    dataset = open_dataset(tmp_path / "out")
    run_recipe(dataset, parse_recipe_text(text), text, tmp_path, jobs=2)
    r = cli("verify", str(dataset.root), "--json", "-j", "2")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["compared"], doc["identical"]) == (2, 1)
    (d,) = doc["differences"]
    assert (d["relpath"], d["status"], d["kind"]) == ("stamp", "differs", "binary")
    rodata = next(s for s in d["sections"] if s["name"] == ".rodata")
    assert rodata["cause"] == "date_time" and d["causes"][0] == "date_time"
    assert "random_names" in d["causes"]  # the mktemp name, in the same section's strings or its own
    text_out = cli("verify", str(dataset.root), "-j", "2").stdout
    assert ".rodata: date_time" in text_out and "likely cause: __DATE__/__TIME__" in text_out
    assert text_out.strip().splitlines()[-1] == "1 of 2 binaries bit-identical (50.0%)"
    with dataset.context.sessions() as s:
        rows = list(s.scalars(select(m.VerificationDifference)))
    assert len(rows) == 2 and all(row.relpath == "stamp" and row.causes[0] == "date_time" for row in rows)


def test_windows_pe_and_pdb_builds_verify_bit_identical(tmp_path):
    need("clang-19", "lld-19", "x86_64-w64-mingw32-gcc", "i686-w64-mingw32-gcc")
    text = (
        "name: repro-windows\nsources:\n  - path: recipes/samples/calc\n  - path: recipes/samples/shapes\n"
        "matrix:\n  platform: [windows]\n  arch: [x86_64, i686]\n  toolchain: [clang-19, mingw-gcc-12]\n"
        "  opt: [O2]\nexclude:\n  - {arch: i686, toolchain: clang-19}\n"
    )
    dataset = open_dataset(tmp_path / "out")
    run_id = run_recipe(dataset, parse_recipe_text(text), text, REPO, jobs=2)
    with dataset.context.sessions() as s:
        lock = lock_for_run(s, run_id)
    pdbs = [x for b in lock.builds for x in b.binaries if x.pdb_sha256]
    assert pdbs and all(x.format == "pe" for b in lock.builds for x in b.binaries)
    report = verify_run(dataset, run_id=run_id, jobs=2)
    assert report.compared >= 4 and report.identical == report.compared, [d.to_dict() for d in report.differences]
