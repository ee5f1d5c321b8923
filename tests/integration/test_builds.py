"""Real builds through the engine: build systems, flags that win, limits, hostile trees."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from assemblage.builds.engine import BuildRequest, run_build
from assemblage.builds.runner import Limits, sandbox_available
from assemblage.recipes.matrix import Config
from tests.conftest import SAMPLES, need, unavailable

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sandbox() -> None:
    """bubblewrap can create namespaces here (else the isolation tests cannot run: unavailable)."""
    if not sandbox_available():
        unavailable(
            "bubblewrap cannot create namespaces here (apt-get install bubblewrap; inside a container it "
            "needs a seccomp profile that allows user namespaces)"
        )


def build(src: Path, config: str, tmp_path: Path, **kw):
    log = tmp_path / f"{config}.log"
    outcome = run_build(BuildRequest(source_dir=src, config=Config.parse(config), **kw), log)
    return outcome, log.read_text()


def producers(binary: Path) -> list[str]:
    """DW_AT_producer strings, read by llvm-dwarfdump (an independent tool)."""
    out = subprocess.run(
        ["llvm-dwarfdump-19", "--debug-info", str(binary)], capture_output=True, text=True, check=True
    ).stdout
    return re.findall(r'DW_AT_producer\s+\("([^"]*)"\)', out)


@pytest.mark.parametrize(
    "sample,system,toolchain,expected",
    [
        ("calc", "make", "gcc-12", {"calc"}),
        ("shapes", "cmake", "clang-19", {"libgeometry.so", "shapes"}),
        ("wordfreq", "autotools", "gcc-11", {"wordfreq"}),
        ("vecmath", "meson", "clang-14", {"libvecmath.so", "vecdemo"}),
    ],
)
def test_build_systems_get_the_configured_level(sample, system, toolchain, expected, tmp_path):
    need("llvm-dwarfdump-19", toolchain.replace("gcc-", "gcc-"))
    outcome, log = build(SAMPLES / sample, f"linux-x86_64-{toolchain}-O1", tmp_path)
    try:
        assert outcome.status == "succeeded", log
        assert outcome.build_system == system
        assert {b.path.name for b in outcome.binaries} == expected
        for b in outcome.binaries:
            prods = [p for p in producers(b.path) if "-O" in p]
            assert prods, f"no producer with flags in {b.relpath}"
            for p in prods:
                # the last -O wins in gcc and clang; it must be ours whatever the project asked for
                assert re.findall(r"-O\S*", p)[-1] == "-O1", p
    finally:
        outcome.cleanup()


def test_makefile_hardcoded_level_does_not_win(tmp_path):
    # calc's Makefile says CFLAGS ?= -O3: the label says O0, the binary must be O0
    need("llvm-dwarfdump-19")
    outcome, log = build(SAMPLES / "calc", "linux-x86_64-gcc-12-O0", tmp_path)
    try:
        assert outcome.status == "succeeded", log
        for p in producers(outcome.binaries[0].path):
            assert "-O3" not in p and p.split()[-1] != "-O3"
            assert re.findall(r"-O\S*", p)[-1] == "-O0"
    finally:
        outcome.cleanup()


def test_a_makefile_that_strips_its_program_keeps_the_symbols_and_the_debug_information(tmp_path):
    """Debian's aribas runs ``strip aribas`` in its Makefile: the program lost every symbol but three and its
    DW_AT_producer. The build's ``strip`` leaves the file as it is (``-o`` copies it)."""
    need("llvm-dwarfdump-19")
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.c").write_text(
        "static int twice(int x) { return 2 * x; }\nint helper(int x) { return twice(x) + 1; }\n"
        "int main(int argc, char **argv) { (void)argv; return helper(argc) - 3; }\n"
    )
    (src / "Makefile").write_text(
        "all: prog prog.min\nprog: main.c\n\t$(CC) -o prog main.c\n\tstrip prog\n\tstrip --strip-all prog\n"
        "prog.min: prog\n\tstrip -o prog.min prog\n"
    )
    outcome, log = build(src, "linux-x86_64-gcc-12-O0", tmp_path)
    try:
        assert outcome.status == "succeeded", log
        by_name = {b.path.name: b.path for b in outcome.binaries}
        assert set(by_name) == {"prog", "prog.min"}
        for path in by_name.values():
            syms = subprocess.run(["nm", str(path)], capture_output=True, text=True).stdout
            assert re.search(r"\bT helper\b", syms) and re.search(r"\bt twice\b", syms), syms
            assert [re.findall(r"-O\S*", p)[-1] for p in producers(path)] == ["-O0"]
    finally:
        outcome.cleanup()


def test_cross_build_aarch64(tmp_path):
    need("aarch64-linux-gnu-gcc-12")
    outcome, log = build(SAMPLES / "calc", "linux-aarch64-gcc-12-O2", tmp_path)
    try:
        assert outcome.status == "succeeded", log
        header = subprocess.run(["readelf", "-h", str(outcome.binaries[0].path)], capture_output=True, text=True).stdout
        assert "AArch64" in header
    finally:
        outcome.cleanup()


def test_compile_error_is_classified(tmp_path):
    outcome, log = build(SAMPLES / "broken", "linux-x86_64-gcc-12-O2", tmp_path)
    assert (outcome.status, outcome.reason) == ("failed", "compile_error")
    assert "undeclared_variable" in outcome.message
    assert "undeclared_variable" in log


@pytest.mark.parametrize(
    "name,text,expected",
    [
        ("main.c", "#include <no_such_library.h>\nint main(void){return 0;}\n", "missing_dependency"),
        ("main.c", "int missing(void);\nint main(void){return missing();}\n", "link_error"),
        ("README", "nothing to build", "no_build_system"),
    ],
)
def test_failures_are_classified(tmp_path, name, text, expected):
    src = tmp_path / "src"
    src.mkdir()
    (src / name).write_text(text)
    outcome, _ = build(src, "linux-x86_64-gcc-12-O2", tmp_path)
    assert (outcome.status, outcome.reason) == ("failed", expected)


def test_missing_toolchain_is_a_clear_per_configuration_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    outcome, log = build(SAMPLES / "calc", "linux-x86_64-gcc-12-O2", tmp_path)
    assert (outcome.status, outcome.reason) == ("skipped", "toolchain_unavailable")
    assert "assemblage toolchains install gcc-12" in outcome.message


def test_msvc_is_refused_here(tmp_path):
    outcome, _ = build(SAMPLES / "calc", "windows-x86_64-msvc-v143-O2", tmp_path)
    assert (outcome.status, outcome.reason) == ("skipped", "toolchain_unavailable")


def test_build_that_loops_forever_is_killed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    # the loop forks children too: all of them must die
    (src / "Makefile").write_text("all:\n\tsleep 1000 & sleep 1000 & while true; do :; done\n")
    started = time.monotonic()
    outcome, log = build(src, "linux-x86_64-gcc-12-O2", tmp_path, limits=Limits(timeout=3))
    elapsed = time.monotonic() - started
    assert (outcome.status, outcome.reason) == ("timed_out", "timeout")
    assert elapsed < 20
    assert "killed after the build's time limit" in log
    time.sleep(0.5)
    leftovers = subprocess.run(["pgrep", "-f", "sleep 1000"], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "processes of a killed build survived"


def test_build_that_fills_memory_is_killed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "hog.c").write_text(
        "#include <stdlib.h>\n#include <string.h>\n"
        "int main(void){for(;;){char*p=malloc(1<<26); if(!p) return 3; memset(p,1,1<<26);} }\n"
    )
    (src / "Makefile").write_text("all: hog\n\t./hog\nhog: hog.c\n\t$(CC) -o hog hog.c\n")
    outcome, log = build(src, "linux-x86_64-gcc-12-O0", tmp_path, limits=Limits(timeout=60, memory=256 * 1024**2))
    assert outcome.status == "failed"
    assert outcome.reason in ("out_of_memory", "build_failed"), log
    # the evidence, not any line that mentions memory: the cap made malloc fail (hog exits 3),
    # or the build was recorded as killed for memory
    assert "[Makefile:2: all] Error 3" in log or outcome.reason == "out_of_memory", log


def test_shell_metacharacters_in_file_names_are_inert(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    marker = tmp_path / "pwned"
    names = [f"$(touch {marker}).c", f"`touch {marker}`;x.c", "a b;c&&d|e.c", "-rf.c", "'quote\".c"]
    for i, n in enumerate(names):
        (src / n.replace("/", "_")).write_text(f"int f{i}(int x) {{ return x * {i + 2}; }}\n")
    (src / "main.c").write_text("int f0(int); int main(void) { return f0(1) - 2; }\n")
    outcome, log = build(src, "linux-x86_64-gcc-12-O2", tmp_path)
    try:
        assert outcome.status == "succeeded", log
        assert outcome.build_system == "plain"
        assert not marker.exists()
        assert list(tmp_path.rglob("pwned")) == []
        syms = subprocess.run(["nm", str(outcome.binaries[0].path)], capture_output=True, text=True).stdout
        for i in range(len(names)):
            assert re.search(rf"\bT f{i}\b", syms), f"f{i} missing: a file was not compiled"
    finally:
        outcome.cleanup()


def test_builds_have_no_network(sandbox, tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    hits = []

    def accept() -> None:
        try:
            hits.append(server.accept())
        except OSError:  # closed at the end of the test: nobody connected
            pass

    threading.Thread(target=accept, daemon=True).start()
    src = tmp_path / "src"
    src.mkdir()
    (src / "Makefile").write_text(
        f"all:\n\t@bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}' && echo CONNECTED || echo REFUSED\n\tfalse\n"
    )
    outcome, log = build(src, "linux-x86_64-gcc-12-O2", tmp_path)
    server.close()
    assert "\nREFUSED" in log and "\nCONNECTED" not in log
    assert hits == []


def test_builds_cannot_write_outside_their_folder(sandbox, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("intact")
    src = tmp_path / "src"
    src.mkdir()
    (src / "Makefile").write_text(f"all:\n\t-echo overwritten > {victim}\n\t-touch /usr/pwned\n\tfalse\n")
    build(src, "linux-x86_64-gcc-12-O2", tmp_path)
    assert victim.read_text() == "intact"
    assert not Path("/usr/pwned").exists()


def test_template_is_never_modified(tmp_path):
    src = tmp_path / "calc"
    shutil.copytree(SAMPLES / "calc", src)
    before = sorted(p.name for p in src.iterdir())
    outcome, _ = build(src, "linux-x86_64-gcc-12-O2", tmp_path)
    outcome.cleanup()
    assert sorted(p.name for p in src.iterdir()) == before


def test_falls_back_to_the_next_build_system_when_configure_fails(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(x C)\nadd_executable(x missing_file.c)\n"
    )
    (src / "main.c").write_text("int main(void){return 0;}\n")
    (src / "Makefile").write_text("prog: main.c\n\t$(CC) $(CFLAGS) -o prog main.c\n")
    outcome, log = build(src, "linux-x86_64-gcc-12-O2", tmp_path)
    try:
        assert outcome.status == "succeeded", log
        assert outcome.build_system == "make"
        assert "cmake failed (configure); trying make" in log
        assert [b.path.name for b in outcome.binaries] == ["prog"]
    finally:
        outcome.cleanup()


def test_ctrl_c_stops_the_run_kills_builds_and_says_so(tmp_path):
    import signal
    import sqlite3
    import sys

    src = tmp_path / "slow"
    src.mkdir()
    (src / "Makefile").write_text("all:\n\tsleep 777\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: slow\nsources: [{{path: {src}}}]\nmatrix: {{toolchain: [gcc-12], opt: [O0, O1, O2]}}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "assemblage.cli", "build", str(recipe), "--out", str(tmp_path / "out"), "--jobs", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not subprocess.run(["pgrep", "-f", "sleep 777"], capture_output=True).stdout:
        time.sleep(0.2)
    assert subprocess.run(["pgrep", "-f", "sleep 777"], capture_output=True).stdout, "the build never started"
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert time.monotonic() - started < 15
    assert proc.returncode == 130
    time.sleep(0.5)
    assert subprocess.run(["pgrep", "-f", "sleep 777"], capture_output=True).stdout == b""
    con = sqlite3.connect(tmp_path / "out" / "dataset.sqlite")
    assert con.execute("select status from runs").fetchone() == ("interrupted",)
    assert set(con.execute("select status, reason from builds")) == {("skipped", "interrupted")}


def test_assemblage_cancel_stops_an_embedded_run_from_another_terminal(tmp_path):
    import sqlite3
    import sys

    src = tmp_path / "slow"
    src.mkdir()
    (src / "Makefile").write_text("all:\n\tsleep 778\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: slow\nsources: [{{path: {src}}}]\nmatrix: {{toolchain: [gcc-12], opt: [O0, O1, O2]}}\n")
    out = tmp_path / "out"
    cli = [sys.executable, "-m", "assemblage.cli"]
    proc = subprocess.Popen(
        [*cli, "build", str(recipe), "--out", str(out), "--jobs", "1", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    sleeping = lambda: subprocess.run(["pgrep", "-f", "sleep 778"], capture_output=True).stdout  # noqa: E731
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not sleeping():
        time.sleep(0.2)
    assert sleeping(), "the build never started"
    r = subprocess.run([*cli, "cancel", "1", "--dataset", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "run 1: cancelled; 2 queued build(s) will not start, 1 running build(s) stopped" in r.stdout
    cancelled = time.monotonic()  # committed: the build watches the run's row every second
    proc.wait(timeout=30)
    assert time.monotonic() - cancelled < 15
    assert proc.returncode == 9, proc.stderr.read()  # the summary: no build succeeded
    time.sleep(0.5)
    assert sleeping() == b""
    con = sqlite3.connect(out / "dataset.sqlite")
    assert con.execute("select status from runs").fetchone() == ("cancelled",)
    assert set(con.execute("select status, reason from builds")) == {("skipped", "cancelled")}
    assert con.execute("select count(*) from builds where attempts > 0").fetchone() == (1,)  # the others never began
    con.close()
    again = subprocess.run([*cli, "cancel", "1", "--dataset", str(out)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "run 1: cancelled; 0 queued" in again.stdout
    missing = subprocess.run([*cli, "cancel", "7", "--dataset", str(out)], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no run 7 in the dataset" in missing.stderr


def test_without_bubblewrap_the_build_runs_only_when_allowed_and_the_log_says_so(tmp_path):
    import sys

    code = (
        "from pathlib import Path\n"
        "from assemblage.builds.engine import BuildRequest, run_build\n"
        "from assemblage.recipes.matrix import Config\n"
        f"o = run_build(BuildRequest(source_dir=Path({str(SAMPLES / 'calc')!r}), "
        f"config=Config.parse('linux-x86_64-gcc-12-O2')), Path({str(tmp_path / 'log')!r}))\n"
        "print(o.status, o.sandboxed)\n"
        "o.cleanup()\n"
    )
    env = {**__import__("os").environ, "ASSEMBLAGE_NO_SANDBOX": "1", "ASSEMBLAGE_ALLOW_UNSANDBOXED": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.stdout.split() == ["succeeded", "False"], r.stderr
    assert "sandbox: NONE: UNSANDBOXED BUILD" in (tmp_path / "log").read_text()
    env["ASSEMBLAGE_ALLOW_UNSANDBOXED"] = "0"  # fails closed (tests/security/test_sandbox.py has more)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.stdout.split() == ["failed", "False"], r.stderr


def test_builds_starting_together_share_one_toolchain_probe(monkeypatch):
    """Two builds that start at once with the same toolchain run one probe (dpkg-query over the whole package
    database, ~0.5 s of CPU) and both get its answer."""
    need("gcc-12")
    from assemblage.builds import reproducible
    from assemblage.builds.runner import LocalRunner
    from assemblage.toolchains.registry import get_toolchain

    queries = []

    class Counting(LocalRunner):
        def query(self, argv, **kw):
            queries.append(argv)
            return super().query(argv, **kw)

    monkeypatch.setattr(reproducible, "_probe_cache", {})
    tc = get_toolchain("gcc-12")
    compilers = tc.compilers("linux", "x86_64", "O0")
    start = threading.Barrier(2)
    results = []

    def probe() -> None:
        start.wait()
        results.append(
            reproducible.probe_toolchain(Counting(Limits()), tc.name, compilers, tc.packages("linux", "x86_64"))
        )

    threads = [threading.Thread(target=probe) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 2 and results[0] == results[1] and results[0].tools
    assert len(queries) == 1, queries
