"""Only parser errors become InvalidBinaryError: a bug of ours (AttributeError, TypeError,
KeyError, IndexError, ValueError) propagates from every analyser, so the hostile-input tests
fail on it instead of counting it as a rejected file. (PE and PDB: tests/unit/test_pdb_hostile.py.)
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest

from assemblage.binaries import analyze_file
from assemblage.binaries._thirdparty import raised_inside
from assemblage.errors import InvalidBinaryError
from tests.conftest import need

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "elf"


def _compile(tmp_path: Path, *args: str) -> Path:
    need("gcc-12")
    out = tmp_path / ("labels.o" if "-c" in args else "labels")
    subprocess.run(["gcc-12", "-g", "-O2", *args, "-o", str(out), str(FIXTURES / "labels.c")], check=True)
    return out


def test_raised_inside_tells_a_library_failing_on_input_from_our_code():
    from elftools.elf.elffile import ELFFile

    with pytest.raises(Exception) as lib:
        ELFFile(io.BytesIO(b"\x7fELF" + b"\xff" * 60))  # pyelftools fails inside itself
    assert raised_inside(lib.value, "elftools")
    with pytest.raises(KeyError) as ours:
        {}["x"]
    assert not raised_inside(ours.value, "elftools", "construct")


def test_a_bug_in_the_elf_analyser_propagates(monkeypatch):
    import assemblage.binaries.elf.analysis as elf

    def broken(*_a, **_k):
        raise KeyError("a bug")

    monkeypatch.setattr(elf, "_analyze", broken)
    true = shutil.which("true")
    with pytest.raises(KeyError, match="a bug"):
        analyze_file(true)


@pytest.mark.parametrize("error", [IndexError, KeyError, ValueError, AttributeError, TypeError])
def test_a_bug_in_the_dwarf_walker_propagates(tmp_path, monkeypatch, error):
    import assemblage.binaries.dwarf.units as units

    exe = _compile(tmp_path)
    analyze_file(exe)  # fine before
    monkeypatch.setattr(units, "_walk_unit", lambda *a: (_ for _ in ()).throw(error("a bug")))
    with pytest.raises(error, match="a bug"):
        analyze_file(exe)


def test_a_bug_in_the_line_reader_propagates(tmp_path, monkeypatch):
    import assemblage.binaries.dwarf.lines as lines

    exe = _compile(tmp_path)
    monkeypatch.setattr(lines, "_run", lambda *a: (_ for _ in ()).throw(IndexError("a bug")))
    with pytest.raises(IndexError, match="a bug"):
        analyze_file(exe)


def test_a_bug_after_relocating_an_object_propagates_and_a_pyelftools_failure_does_not(tmp_path, monkeypatch):
    import assemblage.binaries.elf.analysis as elf

    obj = _compile(tmp_path, "-c")
    monkeypatch.setattr(elf, "sections_from_dwarfinfo", lambda *a, **k: (_ for _ in ()).throw(TypeError("a bug")))
    with pytest.raises(TypeError, match="a bug"):
        analyze_file(obj)
    monkeypatch.undo()
    # a relocation section that points outside the symbol table: pyelftools fails inside itself
    from assemblage.binaries.elf.file import ElfFile

    data = bytearray(obj.read_bytes())
    with ElfFile(obj) as e:
        rela = next(s for s in e.sections if s.name == ".rela.debug_info")
    for k in range(rela.size // 24):
        data[rela.offset + 24 * k + 8 + 4 : rela.offset + 24 * k + 8 + 8] = (0x7FFFFF).to_bytes(4, "little")
    bad = tmp_path / "bad.o"
    bad.write_bytes(bytes(data))
    with pytest.raises(InvalidBinaryError, match="relocat"):
        analyze_file(bad)


def test_a_bug_in_the_pic_hash_is_not_a_silent_raw_hash(monkeypatch):
    from assemblage.binaries.hashing import FunctionHasher
    from assemblage.binaries.model import Range

    code = b"\x55\x48\x89\xe5\x5d\xc3"  # push rbp; mov rbp, rsp; pop rbp; ret
    h = FunctionHasher("x86_64", lambda s, e: code[s - 0x1000 : e - 0x1000])
    assert h.hash([Range(0x1000, 0x1006)])[2] == "x86-masked"
    monkeypatch.setattr(FunctionHasher, "_x86", lambda *a: (_ for _ in ()).throw(ValueError("a bug")))
    with pytest.raises(ValueError, match="a bug"):
        h.hash([Range(0x1000, 0x1006)])
