"""The docker runner (`--runner docker`): builds in containers of the toolchain image, on the real daemon.

``make test`` starts the daemon and builds ``assemblage-linux:latest`` (scripts/docker.sh);
set ASSEMBLAGE_SKIP_DOCKER=1 to skip these tests on a machine that cannot run Docker.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from assemblage.binaries import analyze_file
from assemblage.binaries.verify import verify_binary
from assemblage.builds.engine import BuildRequest, run_build
from assemblage.builds.runner import Limits
from assemblage.errors import BuildError
from assemblage.recipes.matrix import Config
from tests.conftest import SAMPLES, unavailable
from tests.integration.docker_support import IMAGE, docker, require_image, skip_without_docker

pytestmark = [
    pytest.mark.integration,
    skip_without_docker,
]


@pytest.fixture(scope="module", autouse=True)
def image() -> str:
    return require_image()


def build(src: Path, config: str, tmp_path: Path, **kw):
    log = tmp_path / f"{config}.log"
    kw.setdefault("image", IMAGE)
    outcome = run_build(BuildRequest(source_dir=src, config=Config.parse(config), runner="docker", **kw), log)
    return outcome, log.read_text()


def _containers_left() -> list[str]:
    """The build containers of this process (other tests and helpers share the daemon)."""
    from assemblage.builds.docker_runner import OWNER_LABEL, owner

    return docker(
        "ps", "-aq", "--filter", "label=assemblage.build", "--filter", f"label={OWNER_LABEL}={owner()}"
    ).stdout.split()


@pytest.mark.parametrize(
    "sample,config,expected",
    [
        ("calc", "linux-x86_64-gcc-12-O2", {"calc"}),
        ("shapes", "linux-x86_64-clang-19-O2", {"libgeometry.so", "shapes"}),
        ("wordfreq", "linux-x86_64-gcc-11-O2", {"wordfreq"}),
        ("vecmath", "linux-x86_64-clang-14-O2", {"libvecmath.so", "vecdemo"}),
        ("calc", "linux-x86_64-clang-16-O2", {"calc"}),
        ("calc", "linux-aarch64-gcc-12-O2", {"calc"}),
    ],
)
def test_builds_with_the_image_compilers_and_labels_check_out(sample, config, expected, tmp_path):
    outcome, log = build(SAMPLES / sample, config, tmp_path)
    try:
        assert outcome.status == "succeeded", log
        assert "# sandbox: docker image" in log
        assert {b.path.name for b in outcome.binaries} == expected
        for b in outcome.binaries:
            dump = subprocess.run(
                ["llvm-dwarfdump-19", "--debug-info", str(b.path)], capture_output=True, text=True, check=True
            ).stdout
            prods = [p for p in re.findall(r'DW_AT_producer\s+\("([^"]*)"\)', dump) if "-O" in p]
            assert prods and all(re.findall(r"-O\S*", p)[-1] == "-O2" for p in prods), prods
            # the paths in the debug information are the fixed /build, not the host's scratch folder
            assert re.search(r'DW_AT_comp_dir\s+\("/build/src', dump), dump[:2000]
            report = verify_binary(str(b.path), analyze_file(b.path))
            assert report.ok, report.unexplained[:20]
    finally:
        outcome.cleanup()
    assert _containers_left() == []


def test_windows_cross_builds_in_the_image_give_pe_and_pdb(tmp_path):
    from assemblage.binaries import analyze_file

    outcome, log = build(SAMPLES / "calc", "windows-x86_64-clang-19-O2", tmp_path)
    try:
        assert outcome.status == "succeeded", log
        (exe,) = outcome.binaries
        assert exe.format == "pe" and exe.relpath in outcome.pdbs
        names = {f.name for f in analyze_file(exe.path, pdb=outcome.pdbs[exe.relpath]).functions}
        assert "main" in names
    finally:
        outcome.cleanup()


def test_a_toolchain_missing_from_the_image_is_skipped_with_the_reason(tmp_path):
    # the bare Debian base image that scripts/docker.sh imports has no compiler at all
    outcome, log = build(SAMPLES / "calc", "linux-x86_64-clang-14-O0", tmp_path, image="assemblage-base:bookworm")
    assert (outcome.status, outcome.reason) == ("skipped", "toolchain_unavailable")
    assert "not installed in the image assemblage-base:bookworm" in outcome.message


def test_containers_have_no_network(tmp_path):
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen(1)
    port = server.getsockname()[1]
    src = tmp_path / "src"
    src.mkdir()
    # the host's address on the default bridge, and loopback: neither is reachable
    (src / "Makefile").write_text(
        "all:\n\t@ls /sys/class/net\n"
        f"\t@bash -c 'echo hi > /dev/tcp/172.17.0.1/{port}' && echo CONNECTED || echo REFUSED\n\tfalse\n"
    )
    outcome, log = build(src, "linux-x86_64-gcc-12-O2", tmp_path, limits=Limits(timeout=60))
    server.close()
    assert "\nREFUSED" in log and "\nCONNECTED" not in log, log
    assert re.search(r"^lo$", log, re.M) and not re.search(r"^eth\d", log, re.M), log


def test_the_memory_limit_kills_the_step_and_says_out_of_memory(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "Makefile").write_text("all:\n\tpython3 -c \"x = b'x' * (1 << 30)\"\n")
    outcome, log = build(src, "linux-x86_64-gcc-12-O0", tmp_path, limits=Limits(timeout=120, memory=256 * 1024**2))
    assert (outcome.status, outcome.reason) == ("failed", "out_of_memory"), log
    assert "killed by the container's memory limit" in log
    assert _containers_left() == []


def test_a_build_that_loops_forever_is_killed_at_the_timeout(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "Makefile").write_text("all:\n\tsleep 1000 & sleep 1000 & while true; do :; done\n")
    started = time.monotonic()
    outcome, log = build(src, "linux-x86_64-gcc-12-O2", tmp_path, limits=Limits(timeout=4))
    assert (outcome.status, outcome.reason) == ("timed_out", "timeout"), log
    assert time.monotonic() - started < 60
    assert "killed after the build's time limit" in log
    assert _containers_left() == []


def test_the_build_cannot_touch_the_host_or_the_image(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("intact")
    src = tmp_path / "src"
    src.mkdir()
    (src / "Makefile").write_text(
        f"all:\n\t-echo overwritten > {victim}\n\t-@touch /usr/pwned && echo WROTE-USR\n\tfalse\n"
    )
    outcome, log = build(src, "linux-x86_64-gcc-12-O2", tmp_path)
    assert outcome.status == "failed"
    assert victim.read_text() == "intact"
    assert not re.search(r"^WROTE-USR$", log, re.M) and "Read-only file system" in log


def test_ctrl_c_kills_the_running_containers(tmp_path):
    from assemblage.builds.runner import allow_builds, kill_all_builds

    src = tmp_path / "src"
    src.mkdir()
    (src / "Makefile").write_text("all:\n\tsleep 1000\n")
    result = {}
    t = threading.Thread(target=lambda: result.update(out=build(src, "linux-x86_64-gcc-12-O2", tmp_path)))
    t.start()
    deadline = time.monotonic() + 60
    while not _containers_left() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    try:
        assert kill_all_builds() >= 1
        t.join(60)
    finally:
        allow_builds()
    outcome, log = result["out"]
    assert outcome.status == "skipped" and outcome.reason == "interrupted", log
    assert _containers_left() == []


def test_a_missing_image_is_a_clear_error(tmp_path):
    outcome, log = build(SAMPLES / "calc", "linux-x86_64-gcc-12-O2", tmp_path, image="assemblage-nope:missing")
    assert (outcome.status, outcome.reason) == ("failed", "build_environment")
    assert "assemblage-nope:missing" in outcome.message and "scripts/docker.sh image" in outcome.message
    with pytest.raises(BuildError, match="does not exist here"):
        from assemblage.builds.docker_runner import check_image

        check_image("assemblage-nope:missing")


def test_assemblage_build_runner_docker_end_to_end(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: docker-cli\nsources:\n"
        f"  - path: {SAMPLES / 'calc'}\n  - path: {SAMPLES / 'broken'}\n"
        "matrix:\n  platform: [linux]\n  arch: [x86_64]\n  toolchain: [gcc-12, clang-19]\n  opt: [O0, O2]\n"
    )
    exe = Path(os.sys.executable).parent / "assemblage"
    r = subprocess.run(
        [
            str(exe),
            "build",
            str(recipe),
            "--out",
            str(tmp_path / "out"),
            "--runner",
            "docker",
            "--jobs",
            "2",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    import sqlite3

    con = sqlite3.connect(tmp_path / "out" / "dataset.sqlite")
    rows = dict(con.execute("select status || ':' || coalesce(reason, ''), count(*) from builds group by 1"))
    assert rows == {"succeeded:": 4, "failed:compile_error": 4}, (rows, r.stdout, r.stderr)
    opts = con.execute("select optimization from binaries").fetchall()
    assert sorted(o for (o,) in opts) == ["O0", "O0", "O2", "O2"]


@pytest.mark.parametrize("sample,config", [("calc", "linux-x86_64-gcc-12-O2"), ("shapes", "linux-x86_64-clang-19-O0")])
def test_the_docker_and_the_local_runner_build_the_same_bytes(sample, config, tmp_path):
    """Same compilers, same /build path, same SOURCE_DATE_EPOCH: the two runners are interchangeable."""
    import hashlib

    from assemblage.builds.runner import sandbox_available

    if not sandbox_available():
        unavailable("the local runner sees /build only under bubblewrap, which cannot create namespaces here")
    digests = []
    for runner in ("local", "docker"):
        extra = {"image": IMAGE} if runner == "docker" else {}
        outcome = run_build(
            BuildRequest(source_dir=SAMPLES / sample, config=Config.parse(config), runner=runner, **extra),
            tmp_path / f"{runner}.log",
        )
        try:
            assert outcome.status == "succeeded", (tmp_path / f"{runner}.log").read_text()[-3000:]
            digests.append({b.relpath: hashlib.sha256(b.path.read_bytes()).hexdigest() for b in outcome.binaries})
        finally:
            outcome.cleanup()
    assert digests[0] == digests[1]


def test_a_killed_coordinator_leaves_no_build_container_running(tmp_path):
    """SIGKILL the process running a docker build: its container goes within seconds (issue 8)."""
    import signal
    import sys

    from assemblage.builds.docker_runner import OWNER_LABEL, reap_orphans

    src = tmp_path / "src"
    src.mkdir()
    (src / "Makefile").write_text("all:\n\tsleep 1000 & while true; do :; done\n")
    code = (
        "from pathlib import Path\n"
        "from assemblage.builds.engine import BuildRequest, run_build\n"
        "from assemblage.builds.runner import Limits\n"
        "from assemblage.recipes.matrix import Config\n"
        f"run_build(BuildRequest(source_dir=Path({str(src)!r}), config=Config.parse('linux-x86_64-gcc-12-O2'), "
        f"runner='docker', image={IMAGE!r}, limits=Limits(timeout=600)), Path({str(tmp_path / 'log')!r}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    label = f"label={OWNER_LABEL}={socket.gethostname()}:{proc.pid}"

    def mine(*flags: str) -> list[str]:
        return docker("ps", "-q", *flags, "--filter", label).stdout.split()

    try:
        deadline = time.monotonic() + 120
        while not mine() and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "log").read_text()
            time.sleep(0.3)
        assert mine(), "the build's container never started"
        time.sleep(1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed = time.monotonic()
        while mine() and time.monotonic() - killed < 15:
            time.sleep(0.2)
        assert mine() == [], "the container outlived the process that ran it"
        gone_after = time.monotonic() - killed
        assert gone_after < 10, gone_after
        # the stopped container is removed by the next runner on this host (here: the reaper it calls)
        assert reap_orphans() >= 1
        assert mine("-a") == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for cid in docker("ps", "-aq", "--filter", label).stdout.split():
            docker("rm", "-f", cid)
