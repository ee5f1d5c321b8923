"""Size-0 start-up symbols get the extent llvm-objdump shows, and the check catches a wrong one."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from assemblage.binaries.elf import analyze_elf
from assemblage.binaries.verify import verify_binary
from tests.conftest import need


@pytest.fixture(scope="module")
def exe(tmp_path_factory) -> Path:
    need("gcc-12", "llvm-objdump-19", "readelf")
    d = tmp_path_factory.mktemp("extent")
    (d / "m.c").write_text("int main(void) { return 0; }\n")
    subprocess.run(["gcc-12", "-g", "-O2", "m.c", "-o", "m"], cwd=d, check=True)
    return d / "m"


def test_start_up_code_has_the_extent_objdump_shows(exe: Path) -> None:
    a = analyze_elf(exe)
    inferred = {f.name: f for f in a.functions if f.size_inferred}
    assert {
        "_init",
        "_fini",
        "deregister_tm_clones",
        "register_tm_clones",
        "__do_global_dtors_aux",
        "frame_dummy",
    } <= set(inferred)
    assert all(f.size > 0 and f.sha256 and f.ranges for f in inferred.values())
    rep = verify_binary(str(exe), a)
    assert rep.ok, rep.unexplained
    assert rep.counts["inferred_sizes_matched"] == len(inferred)
    assert {d.kind for d in a.disagreements} >= {"size_inferred"}


def test_a_wrong_extent_is_caught(exe: Path) -> None:
    a = analyze_elf(exe)
    f = next(f for f in a.functions if f.name == "deregister_tm_clones")
    a.functions[a.functions.index(f)] = dataclasses.replace(f, end=f.end + 7)  # the padding after its ret
    rep = verify_binary(str(exe), a)
    assert not rep.ok and any(u.startswith("extent: our deregister_tm_clones") for u in rep.unexplained)
