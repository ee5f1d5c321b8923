"""Corrupt, truncated and foreign PDB/PE input: always InvalidBinaryError, never a crash."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assemblage.binaries.pdb import read_pdb, read_pdb_identity
from assemblage.binaries.pdb.msf import MSF_MAGIC, MsfFile
from assemblage.binaries.pe import analyze_pe
from assemblage.errors import InvalidBinaryError
from tests.conftest import unavailable

HAVE_TOOLS = all(shutil.which(t) for t in ("clang-19", "ld.lld-19")) and Path("/usr/x86_64-w64-mingw32").is_dir()
SOURCE = """
static int helper(int x) { return x * 3 + 1; }
static inline int twice(int x) { return helper(x) * 2; }
int api(int n) { int s = 0; for (int i = 0; i < n; i++) s += twice(i); return s; }
int main(int argc, char **argv) { (void)argv; return api(argc); }
"""


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[bytes, bytes, Path]:
    if not HAVE_TOOLS:
        unavailable("needs clang-19, lld-19 and mingw-w64 to build a sample PE + PDB")
    d = tmp_path_factory.mktemp("hostile")
    (d / "s.c").write_text(SOURCE)
    subprocess.run(
        [
            "clang-19",
            "--target=x86_64-w64-mingw32",
            "-O2",
            "-g",
            "-gcodeview",
            "-fuse-ld=lld-19",
            f"-Wl,--pdb={d / 's.pdb'}",
            str(d / "s.c"),
            "-o",
            str(d / "s.exe"),
        ],
        check=True,
        capture_output=True,
    )
    return (d / "s.exe").read_bytes(), (d / "s.pdb").read_bytes(), d


def _structural_offsets(pdb: bytes) -> list[int]:
    """Offsets where the PDB's structure lives: superblock, directory, and the
    first bytes of every stream (info, DBI, IPI, module streams)."""
    msf = MsfFile(pdb)
    bs = msf.block_size
    out = list(range(0, 64))
    for i in range(msf.stream_count):
        for b in msf._blocks[i][:1]:
            out.extend(range(b * bs, b * bs + 96))
    map_addr = struct.unpack_from("<I", pdb, 52)[0]
    out.extend(range(map_addr * bs, map_addr * bs + 16))
    return out


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for off, val in edits:
        b[off % len(b)] = val
    return bytes(b[:cut] if cut is not None else b)


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_pdb_reads_or_raises_invalid_binary(sample, tmp_path, data):
    _pe, pdb, _d = sample
    hot = _structural_offsets(pdb)
    offsets = st.one_of(st.sampled_from(hot), st.integers(0, len(pdb) - 1))
    edits = data.draw(st.lists(st.tuples(offsets, st.integers(0, 255)), min_size=1, max_size=8))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(pdb))))
    path = tmp_path / "m.pdb"
    path.write_bytes(_mutate(pdb, edits, cut))
    try:
        result = read_pdb(path)
    except InvalidBinaryError as exc:
        assert str(path) in str(exc)
        return
    for p in result.procedures:  # what comes back is well-typed (no None rva slips through) and ordered
        assert isinstance(p.name, str) and isinstance(p.rva, int) and isinstance(p.length, int), p
        addrs = [r.address for r in p.lines]
        assert addrs == sorted(addrs), p.name


@settings(max_examples=60, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_pe_analyzes_or_raises_invalid_binary(sample, tmp_path, data):
    pe, pdb, _d = sample
    head = st.integers(0, min(len(pe), 1024) - 1)
    edits = data.draw(
        st.lists(st.tuples(st.one_of(head, st.integers(0, len(pe) - 1)), st.integers(0, 255)), min_size=1, max_size=8)
    )
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(pe))))
    path = tmp_path / "m.exe"
    path.write_bytes(_mutate(pe, edits, cut))
    (tmp_path / "s.pdb").write_bytes(pdb)  # found by the CodeView basename when the record survives
    try:
        a = analyze_pe(path)
    except InvalidBinaryError:
        return
    assert a.format == "pe"


def test_truncations_at_every_block_boundary(sample, tmp_path):
    _pe, pdb, _d = sample
    bs = MsfFile(pdb).block_size
    for cut in range(0, len(pdb), bs):
        p = tmp_path / f"cut{cut}.pdb"
        p.write_bytes(pdb[:cut])
        with pytest.raises(InvalidBinaryError):
            read_pdb(p)


def test_not_a_pdb(tmp_path):
    for name, content in {
        "empty.pdb": b"",
        "text.pdb": b"hello world" * 10,
        "old.pdb": b"Microsoft C/C++ program database 2.00\r\n\x1aJG\x00\x00" + b"\x00" * 64,
        "magic_only.pdb": MSF_MAGIC + b"\x00" * 24,
    }.items():
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(InvalidBinaryError, match=name):
            read_pdb(p)
        with pytest.raises(InvalidBinaryError):
            read_pdb_identity(p)
    with pytest.raises(InvalidBinaryError, match="cannot read"):
        read_pdb(tmp_path / "missing.pdb")


def test_block_size_and_directory_checks(tmp_path):
    good_header = MSF_MAGIC + struct.pack("<6I", 4096, 1, 4, 100, 0, 3)
    bad_bs = MSF_MAGIC + struct.pack("<6I", 1000, 1, 4, 100, 0, 3)
    for blob, msg in ((bad_bs + b"\x00" * 5000, "block size"), (good_header + b"\x00" * 100, "truncated")):
        p = tmp_path / "x.pdb"
        p.write_bytes(blob)
        with pytest.raises(InvalidBinaryError, match=msg):
            read_pdb(p)


def test_not_a_pe(tmp_path):
    for name, content in {
        "empty.exe": b"",
        "elf.exe": b"\x7fELF" + b"\x00" * 200,
        "mz.exe": b"MZ" + b"\x00" * 62,
    }.items():
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(InvalidBinaryError, match=name):
            analyze_pe(p)


def test_a_bug_in_the_pe_analyser_propagates(sample, tmp_path, monkeypatch):
    """An AttributeError of ours is not a "corrupt PE": the mutation tests above would fail on it."""
    import assemblage.binaries.pe.analysis as pe_mod

    pe, pdb, d = sample
    analyze_pe(d / "s.exe")  # fine before
    monkeypatch.setattr(pe_mod, "_sections", lambda *a: (_ for _ in ()).throw(AttributeError("a bug")))
    with pytest.raises(AttributeError, match="a bug"):
        analyze_pe(d / "s.exe")


@pytest.mark.parametrize("error", [IndexError, KeyError, ValueError, TypeError])
def test_a_bug_in_the_pdb_reader_propagates(sample, monkeypatch, error):
    import assemblage.binaries.pdb.reader as pdb_mod

    _pe, _pdb, d = sample
    read_pdb(d / "s.pdb")  # fine before
    monkeypatch.setattr(pdb_mod._Reader, "_publics", lambda *a: (_ for _ in ()).throw(error("a bug")))
    with pytest.raises(error, match="a bug"):
        read_pdb(d / "s.pdb")
