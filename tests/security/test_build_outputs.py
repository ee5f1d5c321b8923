"""Issue 8, item 1: no host file leaves through a build's outputs.

The attack: a ``path:`` source whose Makefile builds a real Windows binary with
clang-19 and lld, then replaces its PDB by ``ln -s`` to a file of the host (a
canary file the test planted outside the build, ``/etc/shadow``), adds "binaries"
that are links to ``/proc/self/environ`` and to a real binary outside, and a link to
a folder outside that holds a binary. The engine used to follow those links when it
collected the outputs and stored what they named. Now every output is opened
relative to the build folder without following links; the refusals are in the log
and in the build's message, and the canaries are nowhere in the dataset.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from assemblage.builds.collect import RefusedOutput, collect_binaries, open_inside, snapshot
from tests.conftest import need
from tests.integration.service_stack import assemblage_cmd
from tests.security.support import Canary, c_project, find_in_files

pytestmark = pytest.mark.integration

CONFIG = "windows-x86_64-clang-19-O0"


class Outside:
    """Canaries outside any build folder: a text file, a real binary holding the canary, a folder with it."""

    def __init__(self, base: Path) -> None:
        self.canary = Canary("file")
        self.env_canary = Canary("env")
        self.dir = base / "outside"
        self.dir.mkdir(parents=True)
        self.file = self.dir / "secret.txt"
        self.file.write_text(f"password={self.canary}\n")
        c_project(self.dir / "proj", str(self.canary))
        self.folder = self.dir / "bin"
        self.folder.mkdir()
        self.binary = self.folder / "stolen.exe"
        subprocess.run(["gcc-12", "-O0", "-o", str(self.binary), str(self.dir / "proj" / "main.c")], check=True)
        assert str(self.canary).encode() in self.binary.read_bytes()
        self.shadow = Path("/etc/shadow").read_bytes() if os.access("/etc/shadow", os.R_OK) else b""


def hostile_source(folder: Path, out: Outside) -> Path:
    """calc (a real C program) built for Windows; then every link out of the build we can think of."""
    folder.mkdir(parents=True)
    c_project(folder, "asm-calc-control")
    lines = [
        "all:",
        "\t$(CC) $(CFLAGS) -o calc.exe main.c $(LDFLAGS)",
        "\t$(CC) $(CFLAGS) -o tool.exe main.c $(LDFLAGS)",
        f"\trm -f calc.pdb && ln -s {out.file} calc.pdb",  # the PDB of a real PE: a link to the canary file
        "\trm -f tool.pdb && ln -s /etc/shadow tool.pdb",
        "\tln -sf /proc/self/environ environ.exe",
        f"\tln -sf {out.binary} stolen.exe",
        f"\tln -sfn {out.folder} linked-folder",  # a folder that is a link, holding a binary
        "\tmkfifo fifo.exe",  # would block a reader that opens it
    ]
    (folder / "Makefile").write_text("\n".join(lines) + "\n")
    return folder


def _needs() -> None:
    need("clang-19", "lld-link-19", "gcc-12", "bwrap")


def test_the_embedded_pipeline_stores_none_of_the_host_files_a_build_links_to(tmp_path):
    _needs()
    out = Outside(tmp_path)
    src = hostile_source(tmp_path / "hostile", out)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: outputs\nsources:\n  - path: {src}\nmatrix:\n  platform: [windows]\n  arch: [x86_64]\n"
        "  toolchain: [clang-19]\n  opt: [O0]\noutputs:\n  stripped: true\n"
    )
    dataset = tmp_path / "out"
    env = {**os.environ, "ASSEMBLAGE_TEST_ENV_CANARY": str(out.env_canary)}  # in the pipeline's /proc/self/environ
    r = subprocess.run(
        assemblage_cmd("build", str(recipe), "--out", str(dataset), "-q"),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    con = sqlite3.connect(dataset / "dataset.sqlite")
    status, reason, message = con.execute("SELECT status, reason, message FROM builds").fetchone()
    assert (status, reason) == ("succeeded", None), message
    # the real binaries are kept, nothing else
    names = sorted(n for (n,) in con.execute("SELECT file_name FROM binaries"))
    assert names == ["calc.exe", "tool.exe"], names
    assert con.execute("SELECT count(*) FROM pdbs").fetchone() == (0,)  # both PDBs were links: refused
    # the refusals are on the build's row and in its log, each named
    for name in ("calc.pdb", "tool.pdb", "environ.exe", "stolen.exe", "linked-folder", "fifo.exe"):
        assert name in message, (name, message)
    (log_key,) = con.execute("SELECT log_key FROM builds").fetchone()
    log = next(dataset.rglob(Path(log_key).name)).read_text()
    assert "refused output (not stored): calc.pdb: a symbolic link" in log, log[-3000:]
    assert f"to {out.file}" in log
    # no canary anywhere: objects, the database, logs
    assert find_in_files(dataset, [str(out.canary), str(out.env_canary)]) == []
    if out.shadow.strip():
        blobs = [p for p in dataset.rglob("*") if p.is_file() and out.shadow in p.read_bytes()]
        assert blobs == []


def test_a_hard_link_to_a_file_of_the_host_is_not_collected(tmp_path):
    """Inside the sandbox a hard link out of /build fails (another mount: EXDEV). Unsandboxed as root, the build
    user could only link files it owns (fs.protected_hardlinks): a file in the build folder not owned by the build
    user is a file of the host, and is refused. Here the test (root) makes such a link in a build folder."""
    if os.geteuid() != 0:
        pytest.skip("the ownership check applies when builds run as the build user (the service is root)")
    need("gcc-12")
    out = Outside(tmp_path)
    build = tmp_path / "build"
    (build / "src").mkdir(parents=True)
    before = snapshot(build / "src")
    os.link(out.binary, build / "src" / "hard.exe")  # owned by root, like a file of the host
    fd = os.open(build, os.O_RDONLY | os.O_DIRECTORY)
    try:
        dest = tmp_path / "collected"
        got = collect_binaries(fd, "src", before, kinds={"executable"}, dest=dest, view="/build")
        assert got.binaries == []
        assert got.refused and "hard.exe: owned by uid 0" in got.refused[0]
        assert not dest.exists() or find_in_files(dest, [str(out.canary)]) == []
        with pytest.raises(RefusedOutput):
            os.close(open_inside(fd, "src/hard.exe"))
    finally:
        os.close(fd)


def test_a_source_folder_replaced_by_a_link_is_refused(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.exe").write_bytes(b"MZ" + b"\0" * 100)
    (build / "src").symlink_to(tmp_path / "elsewhere")
    fd = os.open(build, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(RefusedOutput, match="link"):
            collect_binaries(fd, "src", {}, kinds={"executable"}, dest=tmp_path / "c", view="/build")
        with pytest.raises(RefusedOutput):
            open_inside(fd, "src/x.exe")
    finally:
        os.close(fd)


@pytest.mark.usefixtures("services")
def test_the_service_stores_none_of_the_host_files_a_build_links_to(tmp_path):
    """The same hostile build through the API, a Celery worker, PostgreSQL and S3: the worker's environment
    (its keys, read by a link to /proc/self/environ) and the canary file reach no table, object or answer."""
    from tests.integration.service_stack import Stack
    from tests.security.support import assert_nowhere

    _needs()
    out = Outside(tmp_path)
    root = tmp_path / "root"
    hostile_source(root / "hostile", out)
    recipe = (
        "name: outputs\nsources:\n  - path: hostile\nmatrix:\n  platform: [windows]\n  arch: [x86_64]\n"
        "  toolchain: [clang-19]\n  opt: [O0]\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASSEMBLAGE_TEST_ENV_CANARY", str(out.env_canary))  # inherited by the API and the workers
        with Stack(tmp_path / "stack", source_root=root, sweep_interval=1) as st:
            st.start_api()
            submit, reader = st.client(st.token("submit")), st.client(st.token("read"))
            r = submit.post("/runs", content=recipe, headers={"Content-Type": "application/yaml"})
            assert r.status_code == 201, r.text
            run_id = r.json()["id"]
            st.start_worker("w1", queues="crawl,linux,windows-cross")
            st.wait_run(reader, run_id, timeout=300)
            (cell,) = reader.get(f"/runs/{run_id}/coverage").json()["cells"]
            assert (cell["status"], cell["binaries"]) == ("succeeded", 2), cell
            build = reader.get(f"/builds/{cell['build_id']}").json()
            assert build["sandbox"] == "bubblewrap"
            for name in ("calc.pdb", "tool.pdb", "environ.exe", "stolen.exe", "linked-folder"):
                assert name in build["message"], (name, build["message"])
            log = reader.get(f"/builds/{cell['build_id']}/log").text
            assert "refused output (not stored): environ.exe" in log or "environ.exe: a symbolic link" in log
            answers = [
                log,
                reader.get(f"/builds/{cell['build_id']}").text,
                reader.get("/binaries", params={"run": run_id}).text,
            ]
            assert_nowhere(st, [str(out.canary), str(out.env_canary)], answers=answers, skip=[root])
