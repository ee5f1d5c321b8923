"""Binary formats are registered by their magic bytes (binaries/dispatch.py), not chosen by an if/elif."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from assemblage.binaries import analyze_file, sniff
from assemblage.binaries.dispatch import PDB_MAGIC, BinaryFormat, formats, register_format
from assemblage.errors import InvalidBinaryError


def test_the_registered_formats_and_their_analyzers():
    reg = formats()
    assert list(reg) == ["elf", "pdb", "pe"]  # tried in this order
    assert reg["elf"].analyzer.endswith(":analyze_elf") and reg["pe"].analyzer.endswith(":analyze_pe")
    assert reg["pdb"].analyzer is None and "--pdb" in reg["pdb"].refusal
    with pytest.raises(RuntimeError, match="twice"):
        register_format(BinaryFormat(name="elf", matches=lambda head, fh: False))


def test_sniff_reads_magic_bytes_only(tmp_path: Path):
    gcc = shutil.which("gcc-12") or shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is needed")
    (tmp_path / "m.c").write_text("int main(void) { return 0; }\n")
    subprocess.run([gcc, "-o", str(tmp_path / "m"), str(tmp_path / "m.c")], check=True)
    assert sniff(tmp_path / "m") == "elf"
    pdb = tmp_path / "x.pdb"
    pdb.write_bytes(PDB_MAGIC + b"\0" * 64)
    assert sniff(pdb) == "pdb"
    mz = tmp_path / "dos.exe"
    mz.write_bytes(b"MZ" + b"\0" * 58 + (64).to_bytes(4, "little") + b"NE\0\0")  # a DOS stub, no PE header
    assert sniff(mz) is None
    assert sniff(tmp_path / "missing") is None
    with pytest.raises(InvalidBinaryError, match="a PDB alone is not analysed"):
        analyze_file(pdb)
    with pytest.raises(InvalidBinaryError, match="unknown magic bytes"):
        analyze_file(mz)
    with pytest.raises(InvalidBinaryError, match="no such file"):
        analyze_file(tmp_path / "missing")
    assert any(f.name == "main" for f in analyze_file(tmp_path / "m").functions)
