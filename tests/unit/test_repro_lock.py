"""The lock document, the reproducibility defaults and the verify sample: our own logic, no build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from assemblage.builds.reproducible import PATH_SOURCE_EPOCH, repro_env, repro_flags, source_date_epoch
from assemblage.builds.wrappers import write_wrappers
from assemblage.errors import LockError
from assemblage.pipeline.lock import LockedBinary, LockedBuild, parse_lock
from assemblage.pipeline.verify import sample_builds
from assemblage.toolchains.registry import get_toolchain

MINIMAL = {
    "lock_version": 1,
    "assemblage": "0.1.0",
    "run": {"id": 1, "status": "finished"},
    "recipe": {"name": "x", "sha256": "0" * 64, "text": "name: x\n", "options": {}},
    "sources": [
        {
            "position": 0,
            "label": "src",
            "kind": "path",
            "name": "src",
            "status": "fetched",
            "spec": {"path": "src"},
            "pinned": {"path": "src"},
            "pin": "tree:00",
        }
    ],
    "toolchains": [],
    "builds": [{"source": 0, "config": "linux-x86_64-gcc-12-O2", "status": "succeeded"}],
}


def test_a_minimal_lock_parses():
    lock = parse_lock(json.dumps(MINIMAL))
    assert lock.builds[0].config == "linux-x86_64-gcc-12-O2" and lock.source(0).pin == "tree:00"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("{", "not JSON"),
        ("[1, 2]", "a lock is a JSON object"),
        (json.dumps({**MINIMAL, "lock_version": 7}), "lock_version 7"),
        (
            json.dumps({**MINIMAL, "builds": [{"source": 0, "config": "linux-x86_64-gcc-99-O2", "status": "x"}]}),
            "builds[0].config: Value error, unknown toolchain",
        ),
        (json.dumps({**MINIMAL, "builds": [{"source": "zero", "status": "x"}]}), "builds[0].source"),
        (json.dumps({**MINIMAL, "sources": [{**MINIMAL["sources"][0], "surprise": 1}]}), "sources[0].surprise"),
    ],
)
def test_a_malformed_lock_is_refused_with_where(text, expected):
    with pytest.raises(LockError) as e:
        parse_lock(text, where="my.lock")
    assert e.value.exit_code == 2
    assert str(e.value).startswith("my.lock: ") and expected in str(e.value), str(e.value)


def test_rebuild_of_a_malformed_lock_exits_2_with_one_clear_message(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**MINIMAL, "toolchains": "gcc"}))
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "from assemblage.cli.main import main; main()",
            "rebuild",
            str(bad),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert "problem(s) in the lock" in r.stderr and "toolchains" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


def test_source_date_epoch_comes_from_the_source():
    when = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert source_date_epoch("git", when) == 1700000000
    assert source_date_epoch("debian", when.astimezone(timezone(timedelta(hours=2)))) == 1700000000
    assert source_date_epoch("archive", when.replace(tzinfo=None)) == 1700000000  # SQLite: naive means UTC
    assert source_date_epoch("path", when) == PATH_SOURCE_EPOCH == 315532800
    assert source_date_epoch("git", None) == PATH_SOURCE_EPOCH
    assert repro_env(1700000000) == {
        "SOURCE_DATE_EPOCH": "1700000000",
        "TZ": "UTC",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "ARFLAGS": "rvD",
    }


def _flags(toolchain: str, platform: str = "linux", *, epoch: int = 1700000000, view: str = "/build"):
    tc = get_toolchain(toolchain)
    return repro_flags(tc.family, tc.version, tc.compilers(platform, "x86_64", "O2"), view=view, epoch=epoch)


def test_every_compiler_maps_the_build_folder_to_the_fixed_prefix():
    assert _flags("gcc-12", view="/tmp/asm-build-x") == ("-ffile-prefix-map=/tmp/asm-build-x=/build",)
    assert _flags("mingw-gcc-12", "windows") == ("-ffile-prefix-map=/build=/build",)
    assert _flags("clang-19") == ("-ffile-prefix-map=/build=/build",)


def test_clang_14_gets_the_source_date_from_a_header_and_windows_clang_gets_brepro():
    from assemblage.builds.reproducible import date_header

    flags = _flags("clang-14", epoch=PATH_SOURCE_EPOCH)
    assert flags[-2:] == ("-include", "/build/bin/assemblage-source-date.h") and "-Wno-builtin-macro-redefined" in flags
    assert not any('"' in f for f in flags)  # clang records its flags in DW_AT_producer
    assert '#define __DATE__ "Jan  1 1980"\n#define __TIME__ "00:00:00"' in date_header(PATH_SOURCE_EPOCH)
    assert '#define __DATE__ "Nov 14 2023"' in date_header(1700000000)
    assert "-include" not in _flags("clang-16")  # 16 reads SOURCE_DATE_EPOCH
    assert "-Wl,-Xlink=-Brepro" in _flags("clang-19", "windows")
    assert "-Wl,-Xlink=-Brepro" not in _flags("clang-19")


def test_older_compilers_get_the_debug_and_macro_prefix_maps():
    from assemblage.toolchains.gnu import Gcc

    tc = Gcc(name="gcc-7", family="gcc", version="7", opts=("O2",), targets=(("linux", "x86_64"),))
    flags = repro_flags(tc.family, tc.version, tc.compilers("linux", "x86_64", "O2"), view="/build", epoch=0)
    assert flags == ("-fdebug-prefix-map=/build=/build", "-fmacro-prefix-map=/build=/build")


@pytest.mark.parametrize(
    "args,seed",
    [
        (["-c", "a.c", "-o", "obj/a.o"], "obj/a.o"),
        (["-c", "a.c", "-oobj/a.o"], "obj/a.o"),
        (["-c", "a.c"], None),
        (["-o", "prog", "a.o", "-O3"], "prog"),
    ],
)
def test_the_gcc_wrapper_seeds_random_names_with_the_output_file(tmp_path, args, seed):
    real = tmp_path / "real" / "gcc-12"
    real.parent.mkdir()
    real.write_text('#!/bin/sh\nfor a do printf "%s\\n" "$a"; done\n')
    real.chmod(0o755)
    tc = get_toolchain("gcc-12")
    cc, _ = write_wrappers(
        tmp_path / "bin",
        tc.compilers("linux", "x86_64", "O2"),
        "cfg",
        which=lambda n: str(real),
        extra_flags=("-ffile-prefix-map=/x=/build",),
        random_seed=True,
    )
    out = subprocess.run([str(cc), *args], capture_output=True, text=True, check=True).stdout.splitlines()
    assert "-O3" not in out and "-ffile-prefix-map=/x=/build" in out
    seeds = [a for a in out if a.startswith("-frandom-seed=")]
    assert seeds == ([f"-frandom-seed={seed}"] if seed else [])
    if seed:
        assert out[-1] == f"-frandom-seed={seed}"


def _build(source: int, config: str, status: str = "succeeded", binaries: int = 1) -> LockedBuild:
    return LockedBuild(
        source=source,
        config=config,
        status=status,
        binaries=[LockedBinary(relpath=f"b{i}", sha256="a" * 64, size=1, format="elf") for i in range(binaries)],
    )


def test_the_verify_sample_is_seeded_and_only_takes_builds_with_binaries():
    builds = [_build(s, f"linux-x86_64-gcc-12-{o}") for s in range(6) for o in ("O0", "O2")]
    builds += [_build(9, "linux-x86_64-gcc-12-O0", "failed", 0), _build(9, "linux-x86_64-gcc-12-O2", binaries=0)]
    everything = sample_builds(builds, None, 0)
    assert len(everything) == 12 and all(b.binaries and b.status == "succeeded" for b in everything)
    a, b, c = sample_builds(builds, 5, 1), sample_builds(list(reversed(builds)), 5, 1), sample_builds(builds, 5, 2)
    assert a == b and len(a) == 5 and a != c
    assert sample_builds(builds, 50, 1) == everything


def test_cli_verify_of_a_folder_without_a_dataset_is_a_usage_error(tmp_path):
    r = subprocess.run(
        [sys.executable, "-c", "from assemblage.cli.main import main; main()", "verify", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert r.returncode == 2 and "no dataset here" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not Path(tmp_path, "dataset.sqlite").exists()


def test_drift_names_a_changed_local_folder_and_a_build_without_a_recorded_toolchain(tmp_path):
    from assemblage.pipeline.rebuild import check_drift
    from assemblage.sources import tree_pin

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.c").write_text("int main(void) { return 0; }\n")
    doc = json.loads(json.dumps(MINIMAL))
    doc["sources"][0]["pin"] = tree_pin(src)
    lock = parse_lock(json.dumps(doc))
    drift = check_drift(lock, lock.builds, base=tmp_path, cache=tmp_path / "cache")
    assert [(d.what, d.locked) for d in drift] == [
        ("build linux-x86_64-gcc-12-O2: toolchain and settings", "not recorded in the lock")
    ]
    (src / "a.c").write_text("int main(void) { return 1; }\n")
    drift = check_drift(lock, lock.builds, base=tmp_path, cache=tmp_path / "cache")
    assert drift[0].what == "source src (sources[0])" and drift[0].locked == doc["sources"][0]["pin"]
    assert drift[0].here.startswith("tree:") and drift[0].here != drift[0].locked
