"""The public surface: exports, sniffing, dispatch errors, and the bounded runner."""

from __future__ import annotations

import os
import signal
import struct
import time

import pytest

import assemblage.binaries as binaries
import assemblage.binaries.dispatch as dispatch
from assemblage.binaries import analyze_file, analyze_file_bounded, sniff
from assemblage.errors import InvalidBinaryError


def test_exports_are_complete():
    for name in binaries.__all__:
        assert hasattr(binaries, name), name
    assert {"sniff", "analyze_file", "analyze_file_bounded", "BinaryAnalysis", "Function"} <= set(binaries.__all__)


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_sniff_by_magic_bytes(tmp_path):
    mz = bytearray(128)
    mz[:2] = b"MZ"
    mz[60:64] = struct.pack("<I", 64)
    mz[64:68] = b"PE\0\0"
    assert sniff(write(tmp_path, "a.exe", bytes(mz))) == "pe"
    mz[64:68] = b"XX\0\0"
    assert sniff(write(tmp_path, "b.exe", bytes(mz))) is None  # MZ without a PE header: a DOS stub
    assert sniff(write(tmp_path, "c", b"\x7fELF\x02\x01\x01")) == "elf"
    assert sniff(write(tmp_path, "d.pdb", b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\0\0\0" + bytes(32))) == "pdb"
    assert sniff(write(tmp_path, "e", b"#!/bin/sh\n")) is None
    assert sniff(tmp_path / "missing") is None


def test_unknown_and_missing_files_are_invalid_binaries(tmp_path):
    with pytest.raises(InvalidBinaryError, match="unknown magic") as e:
        analyze_file(write(tmp_path, "x", b"hello"))
    assert e.value.path.endswith("x")
    with pytest.raises(InvalidBinaryError, match="no such file"):
        analyze_file(tmp_path / "missing")


def test_truncated_elf_header_names_the_problem(tmp_path):
    with pytest.raises(InvalidBinaryError, match="too small"):
        analyze_file(write(tmp_path, "t", b"\x7fELF\x02\x01\x01" + bytes(20)))


def test_pe_without_backend_is_reported(tmp_path, monkeypatch):
    import importlib

    real = importlib.import_module

    def fake(name, *a):
        if name == "assemblage.binaries.pe.analysis":
            raise ModuleNotFoundError(name=name)
        return real(name, *a)

    monkeypatch.setattr(importlib, "import_module", fake)
    mz = bytearray(128)
    mz[:2] = b"MZ"
    mz[60:64] = struct.pack("<I", 64)
    mz[64:68] = b"PE\0\0"
    with pytest.raises(InvalidBinaryError, match="PE analysis is not available"):
        analyze_file(write(tmp_path, "a.exe", bytes(mz)))


def test_bounded_passes_errors_through(tmp_path):
    with pytest.raises(InvalidBinaryError, match="unknown magic"):
        analyze_file_bounded(write(tmp_path, "x", b"hello"), timeout=10)


def test_bounded_kills_a_run_over_its_time_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(dispatch, "analyze_file", lambda *a, **k: time.sleep(30))
    t0 = time.monotonic()
    with pytest.raises(InvalidBinaryError, match="exceeded its time budget"):
        analyze_file_bounded(write(tmp_path, "x", b"\x7fELF"), timeout=0.5)
    assert time.monotonic() - t0 < 5


def test_bounded_stops_a_run_over_its_memory_budget(tmp_path, monkeypatch):
    def hog(*a, **k):
        blocks = []
        while True:
            blocks.append(bytearray(64 * 1024**2))

    monkeypatch.setattr(dispatch, "analyze_file", hog)
    with pytest.raises(InvalidBinaryError, match="memory budget"):
        analyze_file_bounded(write(tmp_path, "x", b"\x7fELF"), timeout=30, memory=256 * 1024**2)


def test_bounded_reports_a_crash(tmp_path, monkeypatch):
    monkeypatch.setattr(dispatch, "analyze_file", lambda *a, **k: os.kill(os.getpid(), signal.SIGSEGV))
    with pytest.raises(InvalidBinaryError, match="crashed \\(SIGSEGV\\)"):
        analyze_file_bounded(write(tmp_path, "x", b"\x7fELF"), timeout=10)


def test_bounded_reports_an_unexpected_exception(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise TypeError("bug")

    monkeypatch.setattr(dispatch, "analyze_file", boom)
    with pytest.raises(InvalidBinaryError, match="unexpectedly \\(TypeError: bug\\)"):
        analyze_file_bounded(write(tmp_path, "x", b"\x7fELF"), timeout=10)


def test_forked_worker_returns_results_and_exceptions():
    from assemblage.binaries._forked import Forked

    parent = os.getpid()
    job = Forked(lambda x: (x * 2, os.getpid()), 21)
    value, pid = job.result()
    assert value == 42 and pid != parent  # really ran in a child

    def fail():
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        Forked(fail).result()
    assert Forked(lambda: os.getpid(), enabled=False).result() == parent
    slow = Forked(time.sleep, 30)
    t0 = time.monotonic()
    slow.cancel()
    assert time.monotonic() - t0 < 5


def test_a_bounded_result_keeps_every_line_row(tmp_path, monkeypatch):
    """Line rows cross the pipe as columns (model.Function.__reduce__); they come back as the same LineRows."""
    from assemblage.binaries.model import BinaryAnalysis, Function, LineRow, Range

    rows = [LineRow(0x1000 + i, 4, None if i % 3 == 0 else f"src/f{i % 2}.c", i) for i in range(5000)]
    funcs = [
        Function(name="f", start=0x1000, end=0x6000, size=0x5000, ranges=[Range(0x1000, 0x6000)], lines=rows),
        Function(name="g", start=0x6000, end=0x6010, size=16, aliases=["h"], size_inferred=True),
    ]
    made = BinaryAnalysis(path="x", sha256="0" * 64, size=1, format="elf", arch="x86_64", bits=64, functions=funcs)
    monkeypatch.setattr(dispatch, "analyze_file", lambda *a, **k: made)
    got = analyze_file_bounded(write(tmp_path, "x", b"\x7fELF"), timeout=10)
    assert got == made and got.functions[0].lines == rows and got.functions[1].lines == []
    assert all(type(r) is LineRow for r in got.functions[0].lines)
