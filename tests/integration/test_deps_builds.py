"""Dependencies resolved before the build, Debian packages built by their rules, build systems tried in turn.

Real compilers, the real Docker daemon and image, Debian's real package lists
and Contents index (apt-file update), and llvm-dwarfdump-19 / readelf as
the oracles.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from assemblage.builds.deps import INSTALL_SETTING
from assemblage.builds.engine import BuildOutcome, BuildRequest, run_build
from assemblage.builds.runner import Limits
from assemblage.recipes.matrix import Config
from tests.conftest import REPO, need, unavailable
from tests.integration.docker_support import (
    IMAGE,
    docker,
    require_image,
    skip_without_docker,
)

pytestmark = pytest.mark.integration
FIXTURES = REPO / "tests" / "fixtures" / "deps"


def _build(
    src: Path,
    tmp_path: Path,
    *,
    config: str = "linux-x86_64-gcc-12-O0",
    runner: str = "local",
    kind: str | None = None,
    timeout: float = 1800,
) -> tuple[BuildOutcome, str]:
    log = tmp_path / f"build-{len(list(tmp_path.glob('build-*.log')))}.log"
    outcome = run_build(
        BuildRequest(
            source_dir=src,
            config=Config.parse(config),
            runner=runner,
            image=IMAGE,
            source_kind=kind,
            limits=Limits(timeout=timeout),
        ),
        log,
    )
    return outcome, log.read_text(errors="replace")


def _installed(package: str) -> bool:
    r = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status}", package], capture_output=True, text=True)
    return r.stdout.strip() == "installed"


# ----------------------------------------------------------------- build-system choice (local runner)


def test_falls_back_to_the_next_build_system_after_a_build_failure(tmp_path: Path) -> None:
    need("gcc-12", "cmake", "make")
    outcome, log = _build(FIXTURES / "fallback", tmp_path)
    try:
        assert "cmake failed (build); trying make" in log  # CMake configured, then its build failed
        assert outcome.status == "succeeded", log[-3000:]
        assert outcome.build_system == "make"
        assert [b.relpath for b in outcome.binaries] == ["tool"]
    finally:
        outcome.cleanup()


def test_a_fallback_that_builds_nothing_does_not_hide_the_real_failure(tmp_path: Path) -> None:
    need("gcc-12", "cmake", "make")
    outcome, log = _build(FIXTURES / "empty-fallback", tmp_path)
    try:
        assert "cmake failed (build); trying make" in log and "make built nothing of the kinds asked for" in log
        assert (outcome.status, outcome.reason, outcome.build_system) == ("failed", "compile_error", "cmake"), log
        assert "not_declared_anywhere" in outcome.message
    finally:
        outcome.cleanup()


def test_a_makefile_that_ignores_errors_is_not_a_success(tmp_path: Path) -> None:
    need("gcc-12", "make")
    outcome, log = _build(FIXTURES / "ignores-errors", tmp_path)
    try:
        assert "Error 1 (ignored)" in log  # make went on, and exited 0
        assert outcome.status == "failed", log[-3000:]
        assert outcome.reason == "compile_error"
        assert "2 compiler/linker command(s) failed but the build went on" in outcome.message
        assert "bad.c" in outcome.message
    finally:
        outcome.cleanup()


def test_local_runner_without_the_setting_fails_naming_the_package(tmp_path: Path, monkeypatch) -> None:
    need("gcc-12", "make")
    assert not _installed("libjansson-dev"), "this test needs a machine without libjansson-dev"
    monkeypatch.delenv(INSTALL_SETTING, raising=False)
    outcome, log = _build(FIXTURES / "needs-jansson", tmp_path)
    try:
        assert "jansson.h: No such file or directory" in log
        assert outcome.status == "failed" and outcome.reason == "missing_dependency", log[-3000:]
        assert "libjansson-dev" in outcome.message and INSTALL_SETTING in outcome.message
        assert not _installed("libjansson-dev")  # nothing was installed behind our back
    finally:
        outcome.cleanup()


def test_local_runner_installs_when_allowed(tmp_path: Path, monkeypatch) -> None:
    """ASSEMBLAGE_INSTALL_DEPENDENCIES=1 (as root): apt-get installs the package on the host, then the build works.

    The package is purged again afterwards, so the machine is left as it was.
    """
    need("gcc-12", "make", "apt-get")
    if os.geteuid() != 0:
        unavailable("installing packages on this machine needs root")
    assert not _installed("libjansson-dev"), "this test needs a machine without libjansson-dev"
    runtime_before = _installed("libjansson4")
    monkeypatch.setenv(INSTALL_SETTING, "1")
    try:
        outcome, log = _build(FIXTURES / "needs-jansson", tmp_path)
        try:
            assert "# installing dependencies on this machine: apt-get install" in log
            assert outcome.status == "succeeded", log[-3000:]
            assert outcome.dependencies == ["libjansson-dev"] and outcome.dependency_image is None
        finally:
            outcome.cleanup()
    finally:
        purge = ["libjansson-dev"] + ([] if runtime_before else ["libjansson4"])
        subprocess.run(
            ["apt-get", "purge", "-y", "-q", *purge],
            capture_output=True,
            timeout=600,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        from assemblage.builds import deps

        deps._host_packages.cache_clear()
    assert not _installed("libjansson-dev")


# ----------------------------------------------------------------- docker: derived dependency images


def _assert_image_lacks(path: str, package: str) -> None:
    """The toolchain image has no ``path``: the test proves that a derived image brought ``package``."""
    r = docker("run", "--rm", "--network", "none", "--entrypoint", "test", IMAGE, "!", "-e", path)
    assert r.returncode == 0, f"the toolchain image must not have {package} for this test"


@skip_without_docker
def test_docker_resolves_a_missing_library_and_reuses_the_image(tmp_path: Path) -> None:
    require_image()
    _assert_image_lacks("/usr/include/jansson.h", "libjansson-dev")
    first, log1 = _build(FIXTURES / "needs-jansson", tmp_path, runner="docker")
    try:
        assert "fatal error: jansson.h: No such file or directory" in log1  # the first attempt failed
        assert "header jansson.h -> libjansson-dev" in log1
        assert first.status == "succeeded", log1[-3000:]
        assert first.dependencies == ["libjansson-dev"]
        assert first.dependency_image and first.dependency_image.startswith("assemblage-deps:")
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", first.dependency_image_digest or "")
        inspect = docker("image", "inspect", "-f", "{{.Id}}", first.dependency_image)
        assert inspect.stdout.strip() == first.dependency_image_digest
        # the build step itself had no network: only the loopback device
        assert (first.scratch / "src" / "net.txt").read_text().split() == ["lo"]
        exe = next(b.path for b in first.binaries if b.relpath == "jsonprobe")
        dynamic = subprocess.run(["readelf", "-d", str(exe)], capture_output=True, text=True).stdout
        assert "libjansson.so" in dynamic
    finally:
        first.cleanup()
    second, log2 = _build(FIXTURES / "needs-jansson", tmp_path, runner="docker")
    try:
        assert second.status == "succeeded", log2[-3000:]
        assert second.dependency_image == first.dependency_image
        assert second.dependency_image_digest == first.dependency_image_digest
        assert f"dependency image {first.dependency_image} ({first.dependency_image_digest}) reused" in log2
        assert "building dependency image" not in log2
    finally:
        second.cleanup()


@skip_without_docker
def test_docker_resolves_libcxx_for_the_clang_of_the_configuration(tmp_path: Path) -> None:
    """A CMake project that adds -stdlib=libc++ for Clang (libvmime does) gets libc++-19-dev for clang-19.

    'iostream' (libvmime: 'string') file not found used to be looked up in Contents as a header,
    found in /usr/include/bobcat/string (libbobcat-dev) or nowhere, and the build failed again.
    """
    require_image()
    _assert_image_lacks("/usr/lib/llvm-19/include/c++/v1/string", "libc++-19-dev")
    outcome, log = _build(FIXTURES / "needs-libcxx", tmp_path, config="linux-x86_64-clang-19-O0", runner="docker")
    try:
        assert "-stdlib=libc++" in log and "fatal error: 'iostream' file not found" in log  # the first attempt
        assert "c++-stdlib libc++ -> libc++-19-dev" in log
        assert "libbobcat" not in log
        assert outcome.status == "succeeded", log[-3000:]
        assert outcome.dependencies == ["libc++-19-dev"]
        exe = next(b.path for b in outcome.binaries if b.relpath.endswith("libcxxprobe"))
        dynamic = subprocess.run(["readelf", "-d", str(exe)], capture_output=True, text=True).stdout
        assert "libc++.so" in dynamic
    finally:
        outcome.cleanup()


# ----------------------------------------------------------------- Debian packages by their rules


@pytest.fixture(scope="module")
def hello(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from assemblage.recipes.models import DebianSource
    from assemblage.sources import fetch_source

    need("apt-get", "dpkg-source")
    return fetch_source(
        DebianSource(debian="hello"), base=Path.cwd(), cache=tmp_path_factory.mktemp("debian-cache")
    ).path


@skip_without_docker
def test_debian_package_built_by_its_rules_at_O0(hello: Path, tmp_path: Path) -> None:
    require_image()
    need("llvm-dwarfdump-19")
    outcome, log = _build(hello, tmp_path, config="linux-x86_64-gcc-12-O0", runner="docker", kind="debian")
    try:
        assert outcome.status == "succeeded", log[-4000:]
        assert outcome.build_system == "debian-rules"
        assert (
            "$ dpkg-buildpackage: env -u CFLAGS" in log
            and "dpkg-buildpackage --no-sign --rules-target=build-arch" in log
        )
        assert {"debhelper", "texinfo"} <= set(outcome.dependencies)  # its Build-Depends
        exe = next(b.path for b in outcome.binaries if b.relpath == "hello")
        dump = subprocess.run(
            ["llvm-dwarfdump-19", "--debug-info", str(exe)], capture_output=True, text=True, check=True
        ).stdout
        producers = re.findall(r'DW_AT_producer\s+\("([^"]*)"\)', dump)
        assert producers, "no DW_AT_producer: the build did not get our -g"
        for p in producers:
            levels = re.findall(r"(?<!\S)-O\w*", p)
            assert levels and levels[-1] == "-O0", p  # Debian's rules would give -O2
    finally:
        outcome.cleanup()


@skip_without_docker
def test_debian_rules_flags_of_the_maintainer_reach_the_compiler(tmp_path: Path) -> None:
    """DEB_CFLAGS_MAINT_APPEND of debian/rules is kept (clfft needs its -fpermissive): debhelper computes
    CFLAGS from dpkg-buildflags only when the environment has none, so the build step must not pass ours."""
    require_image()
    outcome, log = _build(FIXTURES / "debian-maint-flags", tmp_path, runner="docker", kind="debian")
    try:
        assert "did not reach the compiler" not in log
        assert outcome.status == "succeeded", log[-4000:]
        assert outcome.build_system == "debian-rules" and [b.relpath for b in outcome.binaries] == ["tool"]
        assert "-DFROM_MAINT_APPEND=1" in log and "-O0" in log
    finally:
        outcome.cleanup()


def test_debian_tree_whose_rules_cannot_be_used_falls_back(tmp_path: Path) -> None:
    """Build-Depends nothing in the archive satisfies: the rules are not used, the tree's Makefile is, and said so."""
    need("gcc-12", "make")
    outcome, log = _build(FIXTURES / "debian-unusable", tmp_path, kind="debian")
    try:
        assert "debian/rules not used: Build-Depends not satisfiable from the archive: debhelper-compat (= 99)" in log
        assert "debian-rules failed (missing_dependency); trying make" in log
        assert outcome.status == "succeeded", log[-3000:]
        assert outcome.build_system == "make" and [b.relpath for b in outcome.binaries] == ["tool"]
    finally:
        outcome.cleanup()


def test_refused_rules_cost_no_second_copy_and_apt_is_asked_once(tmp_path: Path, monkeypatch) -> None:
    """Rules refused before any step ran leave the copied tree as it was: the next build system uses it without
    copying the tree again; apt's index targets are asked once for two builds (each call rebuilds apt's cache)."""
    need("gcc-12", "make")
    from assemblage import _spawn
    from assemblage.builds import aptindex, attempts

    resets, asks = [], []
    real_reset, real_run = attempts._reset, _spawn.run
    monkeypatch.setattr(attempts, "_reset", lambda a: (resets.append(a.src), real_reset(a))[1])
    monkeypatch.setattr(
        _spawn,
        "run",
        lambda argv, **kw: (asks.append(argv) if "indextargets" in argv else None, real_run(argv, **kw))[1],
    )
    monkeypatch.setattr(aptindex, "_index_cache", {}, raising=False)
    for _ in range(2):
        outcome, log = _build(FIXTURES / "debian-unusable", tmp_path, kind="debian")
        outcome.cleanup()
        assert "debian-rules failed (missing_dependency); trying make" in log
        assert outcome.status == "succeeded" and outcome.build_system == "make", log[-3000:]
    assert resets == []
    assert len(asks) == 1, asks


def test_apt_is_asked_again_when_its_lists_change(tmp_path: Path, monkeypatch) -> None:
    """The remembered index files follow the lists: a changed lists folder (apt-get update) means a new answer."""
    from assemblage import _spawn
    from assemblage.builds import aptindex

    real = aptindex.index_files("Packages", architecture="amd64")
    if not real:
        unavailable("apt has no package lists here: run apt-get update (scripts/bootstrap.sh does)")
    lists = tmp_path / "lists"
    lists.mkdir()
    for f in real:
        shutil.copy(f, lists / f.name)
    monkeypatch.setenv("ASSEMBLAGE_APT_OPTIONS", f"Dir::State::Lists={lists}")
    asks = []
    real_run = _spawn.run
    monkeypatch.setattr(
        _spawn,
        "run",
        lambda argv, **kw: (asks.append(argv) if "indextargets" in argv else None, real_run(argv, **kw))[1],
    )
    first = aptindex.index_files("Packages", architecture="amd64")
    assert first and all(p.parent == lists for p in first) and len(asks) == 1
    assert aptindex.index_files("Packages", architecture="amd64") == first and len(asks) == 1
    st = lists.stat()
    os.utime(lists, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert aptindex.index_files("Packages", architecture="amd64") == first and len(asks) == 2
    first[0].unlink()
    assert aptindex.index_files("Packages", architecture="amd64") == first[1:] and len(asks) == 3


def test_environment_has_the_contents_index() -> None:
    """make test runs apt-file update (scripts/bootstrap.sh): the dependency lookup has its index."""
    from assemblage.builds.aptindex import contents_ready

    assert shutil.which("apt-file") and contents_ready(), "run scripts/bootstrap.sh apt test (apt-file update)"
    assert os.path.exists("/usr/lib/apt/apt-helper")


# ----------------------------------------------------------------- crawl: a selector against the real archive


def test_crawl_a_debian_selector(tmp_path: Path) -> None:
    """The real Sources index, real apt-get source: the same seed gives the same packages, each a C tree."""
    import json

    from tests.integration.service_stack import assemblage_cmd

    need("apt-get", "dpkg-source")
    selector = "{section: libs, language: c, max_size: 1MiB, limit: 2, seed: 7}"
    runs = []
    for _ in range(2):
        r = subprocess.run(
            assemblage_cmd("crawl", "--debian", selector, "--json", "--cache", str(tmp_path)),
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        (report,) = json.loads(r.stdout)["sources"]
        assert report["kind"] == "debian" and report["selector"]["seed"] == 7
        runs.append(report["packages"])
    assert len(runs[0]) == 2 and runs[0] == runs[1]
    for row in runs[0]:
        assert row["kept"] and row["language"] == "c" and row["section"] == "libs"
        assert row["size"] <= 1024 * 1024 and row["package"] and row["version"]
    bad = subprocess.run(assemblage_cmd("crawl", "--debian", "{sectio: libs}"), capture_output=True, text=True)
    assert bad.returncode == 2 and "--debian.selector.sectio" in bad.stderr
