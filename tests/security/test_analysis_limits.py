"""Issue 8, items 7 and 13: work on a build's binaries stays inside its limits, and nothing of it outlives them.

Item 7: a crafted ELF whose ``.debug_line`` runs for minutes in the forked
line-table helper; the analysis's timeout must kill that grandchild too, not
only the analysis process. A build that leaves more binaries than
``max_binaries_per_build`` fails with that reason and the count.

Item 13: ``llvm-strip`` (the stripped copies) runs on the build's binaries
under the analysis limits: its own address-space limit, the timeout, and the
process-group kill; a 16 KB ELF that makes llvm-strip size its output at
1 TiB is stopped by the budget. Capstone and the demangler run inside the
analysis (the bounded child and its forked helpers), so the first test covers
them too.

Processes are found by a marker: a unique word on the command line of the
test's own analysis process, which its forked children keep.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from assemblage.binaries import strip_file_bounded
from assemblage.errors import InvalidBinaryError
from tests.conftest import need

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------ helpers


def marked(marker: str) -> list[int]:
    """Live processes whose command line holds ``marker`` (a zombie's is empty)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def survivors(marker: str, grace: float = 2.0) -> list[int]:
    """What still runs with ``marker`` after ``grace`` seconds (a SIGKILL takes a moment to land)."""
    deadline = time.monotonic() + grace
    while (left := marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _section(elf: bytes, name: str) -> bytes:
    """A section of a 64-bit little-endian ELF (what gcc makes here)."""
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def header(i: int) -> tuple[int, ...]:
        return struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize)

    strings = header(shstrndx)[4]
    for i in range(shnum):
        h = header(i)
        end = elf.index(b"\0", strings + h[0])
        if elf[strings + h[0] : end].decode() == name:
            return elf[h[4] : h[4] + h[5]]
    raise KeyError(name)


def _uleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def crafted_elf(tmp: Path, programs: int = 8) -> Path:
    """A real gcc -g binary whose line programs spin for a minute in the analysis's forked helper.

    ``.debug_line``: ``programs`` copies of the first program's header, each one's
    ``header_length`` pointing past the others to one shared body of 32 Mi
    ``DW_LNS_advance_pc`` opcodes (no row: pure CPU), and one more compile unit per
    copy naming it (``DW_AT_stmt_list``): the body is run ``programs`` times.
    ``.debug_info`` also gets a unit with a 600 KiB name, so that the line tables are
    read in the forked helper (done past 512 KiB of .debug_info). Both zlib-compressed:
    the file stays under 200 KB.
    """
    need("gcc", "objcopy")
    (tmp / "small.c").write_text("int add(int a, int b) { return a + b; }\nint main(void) { return add(1, 2); }\n")
    plain = tmp / "plain"
    subprocess.run(["gcc", "-g", "-O0", "-o", str(plain), str(tmp / "small.c")], check=True)
    elf = plain.read_bytes()
    line, info, abbrev = (_section(elf, n) for n in (".debug_line", ".debug_info", ".debug_abbrev"))
    (length,) = struct.unpack_from("<I", line, 0)
    (version,) = struct.unpack_from("<H", line, 4)
    at = 6 + (2 if version >= 5 else 0)  # DWARF 5 adds address_size and segment_selector_size
    (header_length,) = struct.unpack_from("<I", line, at)
    start = at + 4 + header_length
    header, body = line[:start], b"\x02\x01" * (32 << 20) + line[start : 4 + length]
    total = programs * start + len(body)
    heads = b"".join(
        struct.pack("<I", total - k * start - 4)
        + header[4:at]
        + struct.pack("<I", programs * start - (k * start + at + 4))
        + header[at + 4 :]
        for k in range(programs)
    )
    # abbrev 1: DW_TAG_compile_unit, no children, DW_AT_name as DW_FORM_string;
    # abbrev 2: the same with DW_AT_stmt_list as DW_FORM_sec_offset
    extra = _uleb(1) + _uleb(0x11) + b"\0" + _uleb(0x03) + _uleb(0x08) + b"\0\0"
    extra += _uleb(2) + _uleb(0x11) + b"\0" + _uleb(0x10) + _uleb(0x17) + b"\0\0" + b"\0"
    units = [struct.pack("<HIB", 4, len(abbrev), 8) + _uleb(1) + b"A" * (600 << 10) + b"\0"]
    units += [
        struct.pack("<HIB", 4, len(abbrev), 8) + _uleb(2) + struct.pack("<I", k * start) for k in range(1, programs)
    ]
    parts = {
        "line": heads + body + line[4 + length :],
        "abbrev": abbrev + extra,
        "info": info + b"".join(struct.pack("<I", len(u)) + u for u in units),
    }
    for name, data in parts.items():
        (tmp / name).write_bytes(data)
    edited, out = tmp / "edited", tmp / "crafted"
    subprocess.run(
        ["objcopy", *(f"--update-section=.debug_{n}={tmp / n}" for n in parts), str(plain), str(edited)], check=True
    )
    subprocess.run(["objcopy", "--compress-debug-sections=zlib", str(edited), str(out)], check=True)
    assert out.stat().st_size < 200_000
    return out


# ------------------------------------------------------------------ item 7


ANALYSE = textwrap.dedent("""
    import sys
    from assemblage.binaries import analyze_file_bounded
    from assemblage.errors import InvalidBinaryError
    try:
        analyze_file_bounded(sys.argv[1], timeout=float(sys.argv[2]))
        print("analysed")
    except InvalidBinaryError as exc:
        print(exc.problem)
""")


def test_an_analysis_timeout_leaves_no_process_behind(tmp_path: Path) -> None:
    crafted = crafted_elf(tmp_path)
    marker = f"asm-marker-{uuid.uuid4().hex}"
    # output to files, not pipes: a pipe stays open as long as any process of the analysis lives
    with open(tmp_path / "out", "w") as out_fh, open(tmp_path / "err", "w") as err_fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", ANALYSE, str(crafted), "2", marker], stdout=out_fh, stderr=err_fh
        )
    most = 0
    try:
        while proc.poll() is None:
            most = max(most, len(marked(marker)))
            time.sleep(0.05)
        left = survivors(marker)
    finally:
        kill_all(marked(marker))
        proc.kill()
        proc.wait()
    out, err = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert "analysis exceeded its time budget (2 s)" in out, (out, err)
    # the analysing process, its bounded child and the child's line-table helper all ran
    assert most >= 3, most
    assert left == [], f"processes of the analysis outlived its timeout: {left}"


def test_a_build_that_leaves_too_many_binaries_fails_with_the_count(tmp_path: Path) -> None:
    need("gcc-12")
    from assemblage.pipeline.embedded import open_dataset, run_recipe
    from assemblage.pipeline.report import run_report
    from assemblage.recipes import parse_recipe

    src = tmp_path / "many"
    src.mkdir()
    (src / "main.c").write_text("int main(void) { return 0; }\n")
    (src / "Makefile").write_text("all:\n\tfor i in 1 2 3 4 5 6; do $(CC) -o prog$$i main.c || exit 1; done\n")
    recipe = parse_recipe(
        {"name": "many", "sources": [{"path": str(src)}], "matrix": {"toolchain": ["gcc-12"], "opt": ["O0"]}}
    )
    ds = open_dataset(tmp_path / "out")
    ds = dataclasses.replace(ds, context=dataclasses.replace(ds.context, max_binaries=3))
    run_id = run_recipe(ds, recipe, "many", tmp_path, jobs=1)
    with ds.context.sessions() as s:
        (cell,) = run_report(s, run_id).cells
    assert (cell.status, cell.reason) == ("failed", "too_many_binaries"), (cell.status, cell.reason, cell.message)
    assert "left 6 binaries" in cell.message and "at most 3" in cell.message
    assert "max_binaries_per_build" in cell.message
    con = sqlite3.connect(ds.db_path)
    assert con.execute("select count(*) from binaries").fetchone() == (0,)  # none kept: not cut at an arbitrary file


def test_the_setting_reaches_the_workers_builds(tmp_path: Path) -> None:
    from assemblage.settings import load_settings
    from assemblage.tasks.runtime import Runtime

    settings = load_settings(
        max_binaries_per_build=7,
        database_url=f"sqlite:///{tmp_path}/db.sqlite",
        storage_url=f"file://{tmp_path}/store",
        cache_dir=tmp_path / "cache",
    )
    assert Runtime(settings).context().max_binaries == 7


# ------------------------------------------------------------------ item 13


def test_the_strip_tool_runs_under_the_analysis_memory_limit(tmp_path: Path) -> None:
    need("gcc", "llvm-strip")
    (tmp_path / "a.c").write_text("int main(void) { return 0; }\n")
    binary = tmp_path / "a"
    subprocess.run(["gcc", "-g", "-o", str(binary), str(tmp_path / "a.c")], check=True)
    # llvm-strip maps a shared LLVM library far larger than 16 MiB: under that budget it cannot even start
    with pytest.raises(InvalidBinaryError, match="llvm-strip (failed|was killed)"):
        strip_file_bounded("llvm-strip", binary, tmp_path / "small-budget", timeout=30, memory=16 * 1024**2)
    assert not (tmp_path / "small-budget").exists()
    strip_file_bounded("llvm-strip", binary, tmp_path / "stripped", timeout=30, memory=2 * 1024**3)
    assert b".symtab" in binary.read_bytes() and b".symtab" not in (tmp_path / "stripped").read_bytes()


def test_a_strip_bomb_is_stopped_by_the_memory_budget(tmp_path: Path) -> None:
    """A 16 KB ELF whose allocated, unmapped ``.comment`` asks for 1 TiB alignment: llvm-strip sizes its output at 1 TiB."""
    need("gcc", "llvm-strip")
    (tmp_path / "a.c").write_text("int main(void) { return 0; }\n")
    binary = tmp_path / "a"
    subprocess.run(["gcc", "-o", str(binary), str(tmp_path / "a.c")], check=True)
    data = bytearray(binary.read_bytes())
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    strings = struct.unpack_from("<IIQQQQIIQQ", data, shoff + shstrndx * shentsize)[4]
    for i in range(shnum):
        h = list(struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize))
        if data[strings + h[0] : data.index(b"\0", strings + h[0])] == b".comment":
            h[2] |= 0x2  # SHF_ALLOC, in no segment: llvm-objcopy lays it out after the segments
            h[8] = 1 << 40  # sh_addralign
            struct.pack_into("<IIQQQQIIQQ", data, shoff + i * shentsize, *h)
            break
    else:
        raise AssertionError("gcc left no .comment section")
    bomb = tmp_path / "bomb"
    bomb.write_bytes(bytes(data))
    t0 = time.monotonic()
    with pytest.raises(InvalidBinaryError, match="llvm-strip (failed|was killed)") as caught:
        strip_file_bounded("llvm-strip", bomb, tmp_path / "out", timeout=60, memory=1024**3)
    assert time.monotonic() - t0 < 30
    assert "out of memory" in caught.value.problem  # what llvm-strip said, not only our note
    assert not (tmp_path / "out").exists()


def test_a_strip_that_hangs_is_cut_with_everything_it_started(tmp_path: Path) -> None:
    marker = f"asm-marker-{uuid.uuid4().hex}"
    tool = tmp_path / "hanging-strip"
    # what a strip tool stuck on a hostile file looks like from outside: busy, with a helper of its own
    tool.write_text(f"#!/bin/sh\nsh -c 'while :; do :; done' {marker} &\nexec sh -c 'while :; do :; done' {marker}\n")
    tool.chmod(0o755)
    (tmp_path / "a").write_bytes(b"\x7fELF" + bytes(60))
    t0 = time.monotonic()
    try:
        with pytest.raises(InvalidBinaryError, match=r"stripping exceeded its time budget \(1 s\)"):
            strip_file_bounded(str(tool), tmp_path / "a", tmp_path / "out", timeout=1, memory=256 * 1024**2)
        left = survivors(marker)
    finally:
        kill_all(marked(marker))
    assert time.monotonic() - t0 < 10
    assert left == [], f"the strip tool's processes outlived its timeout: {left}"
