"""Our own logic around dependencies, Debian selectors and failed commands (no network, no Docker)."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from debian.deb822 import PkgRelation
from pydantic import ValidationError

from assemblage.builds import deps
from assemblage.builds.aptindex import BinaryArchive, BinaryPackage
from assemblage.builds.debian import DebianRulesPlanner, build_depends, debian_env
from assemblage.builds.failures import read_failures
from assemblage.builds.needs import Need, cxx_stdlib_package, needs_from_log, resolve
from assemblage.builds.systems import BuildTools, PlainPlanner
from assemblage.builds.wrappers import write_wrappers
from assemblage.recipes.models import DebianSelector, DebianSource
from assemblage.sources import debian_select as sel
from assemblage.sources import source_label
from assemblage.toolchains.registry import get_toolchain
from tests.conftest import need

# ----------------------------------------------------------------- what logs say is missing

LOG = """\
src/x.c:3:10: fatal error: jansson.h: No such file or directory
src/y.c:1:10: fatal error: 'zstd.h' file not found
src/z.c:2:10: fatal error: libxml/parser.h: No such file or directory
/usr/bin/ld: cannot find -lfoo: No such file or directory
ld.lld: error: unable to find library -lbar
No package 'libpng' found
Package 'glib-2.0', required by 'virtual:world', not found
meson.build:10:0: ERROR: Dependency "gtk4" not found, tried pkgconfig
CMake Error at CMakeLists.txt:4 (find_package):
  Could not find a package configuration file provided by "fmt" with any of
Could NOT find ZLIB (missing: ZLIB_LIBRARY ZLIB_INCLUDE_DIR)
/bin/sh: 1: makeinfo: not found
sh: 1: build-aux/git-version-gen: not found
WARNING: 'bison' is missing on your system.
dpkg-checkbuilddeps: error: Unmet build dependencies: debhelper-compat (= 13) libssl-dev | libressl-dev help2man
configure: error: Package requirements (libcurl >= 7.0 sqlite3) were not met:
"""


def test_needs_from_log() -> None:
    got = set(needs_from_log(LOG))
    assert {
        Need("header", "jansson.h"),
        Need("header", "zstd.h"),
        Need("header", "libxml/parser.h"),
        Need("library", "foo"),
        Need("library", "bar"),
        Need("pkgconfig", "libpng"),
        Need("pkgconfig", "glib-2.0"),
        Need("pkgconfig", "gtk4"),
        Need("cmake", "fmt"),
        Need("cmake-find", "ZLIB"),
        Need("tool", "makeinfo"),
        Need("tool", "bison"),
        Need("package-relation", "debhelper-compat (= 13)"),
        Need("package-relation", "libssl-dev | libressl-dev"),
        Need("package-relation", "help2man"),
        Need("pkgconfig", "libcurl"),
        Need("pkgconfig", "sqlite3"),
    } <= got
    # a project's own script run by a relative path is no Debian package
    assert not any(n.name == "git-version-gen" for n in got)


# libvmime's CMake adds -stdlib=libc++ for Clang; clang-19 then has no <string> (its log, trimmed)
LIBCXX_LOG = """\
cd /build/src/debian/build && /build/bin/c++ -DVMIME_STATIC -I/build/src/debian/build/src -std=c++11 \
-stdlib=libc++ -D_REENTRANT=1 -W -Wall -O0 -g -fPIC -o CMakeFiles/vmime.dir/src/vmime/address.cpp.o \
-c /build/src/src/vmime/address.cpp
In file included from /build/src/src/vmime/address.cpp:24:
/build/src/src/vmime/base.hpp:30:10: fatal error: 'string' file not found
   30 | #include <string>
      |          ^~~~~~~~
"""


def test_a_missing_cxx_standard_header_is_the_standard_library_of_the_compiler() -> None:
    needs = needs_from_log(LIBCXX_LOG)
    assert needs == [Need("c++-stdlib", "libc++")]  # never a header looked up in Contents (libbobcat-dev)
    # no Contents search for it: resolved from the configuration's compiler alone
    found, unknown = resolve(needs, compiler="clang++-19")
    assert found == {Need("c++-stdlib", "libc++"): "libc++-19-dev"} and unknown == []
    assert resolve(needs, compiler="clang++-16")[0] == {Need("c++-stdlib", "libc++"): "libc++-16-dev"}
    assert resolve(needs, compiler="clang++-19", host_arch="arm64")[0] == {
        Need("c++-stdlib", "libc++"): "libc++-19-dev:arm64"
    }
    assert resolve(needs, compiler="g++-12") == ({}, [Need("c++-stdlib", "libc++")])  # gcc has no libc++
    # without -stdlib=libc++, the compiler's own libstdc++ (gcc names a bare header its own way)
    for line in (
        "x.cc:1:10: fatal error: 'vector' file not found",
        "x.cc:1:10: fatal error: vector: No such file or directory",
    ):
        assert needs_from_log(line) == [Need("c++-stdlib", "libstdc++")]
    assert cxx_stdlib_package("libstdc++", "x86_64-linux-gnu-g++-12") == "libstdc++-12-dev"
    assert cxx_stdlib_package("libstdc++", "/usr/bin/clang++-19") == "g++"
    assert cxx_stdlib_package("libc++", "clang++") == "libc++-dev"
    # other bare names stay what they were: a header (clang) or nothing (gcc)
    assert needs_from_log("x.c:1:10: fatal error: 'config' file not found") == [Need("header", "config")]
    assert needs_from_log("x.c:1:10: fatal error: config: No such file or directory") == []
    assert needs_from_log("-stdlib=libc++ and x.c:1:10: fatal error: 'zstd.h' file not found") == [
        Need("header", "zstd.h")
    ]


# ----------------------------------------------------------------- Build-Depends against an archive


def _archive() -> BinaryArchive:
    return BinaryArchive(
        [
            BinaryPackage(
                name="debhelper",
                version="13.11.4",
                architecture="all",
                multi_arch="foreign",
                provides=(("debhelper-compat", "13"), ("debhelper-compat", "12")),
            ),
            BinaryPackage(
                name="zlib1g-dev",
                version="1:1.2.13",
                architecture="amd64",
                multi_arch="same",
                provides=(("libz-dev", None),),
            ),
            BinaryPackage(name="gcc-multilib", version="4:12.2.0", architecture="amd64", multi_arch="no"),
            BinaryPackage(name="libcheck-dev", version="0.15", architecture="amd64", multi_arch="same"),
            BinaryPackage(name="old-lib-dev", version="1.0", architecture="amd64", multi_arch="same"),
            BinaryPackage(name="bison", version="3.8", architecture="amd64", multi_arch="foreign"),
        ],
        "amd64",
    )


def test_satisfy_reads_restrictions_alternatives_and_provides() -> None:
    rel = PkgRelation.parse_relations(
        "debhelper-compat (= 13), libz-dev, gcc-multilib [amd64 i386] <!nobiarch>, libcheck-dev <!nocheck>, "
        "nothere | bison, old-lib-dev (>= 2.0), win32-only [mingw-any],\n"
    )  # a trailing comma, as many have
    res = _archive().satisfy(rel, profiles=("nocheck",))
    assert res.packages == ["bison", "debhelper", "gcc-multilib", "zlib1g-dev"]
    assert res.unsatisfiable == ["old-lib-dev (>= 2.0)"] and not res.ok
    assert (
        "debhelper-compat (= 14)"
        in _archive().satisfy(PkgRelation.parse_relations("debhelper-compat (= 14)")).unsatisfiable[0]
    )


def test_satisfy_for_a_cross_build_installs_libraries_for_the_host() -> None:
    rel = PkgRelation.parse_relations("debhelper-compat (= 13), zlib1g-dev, bison, gcc-multilib [amd64]")
    res = _archive().satisfy(rel, host_arch="arm64", profiles=("cross", "nocheck"))
    assert res.packages == ["bison", "debhelper", "zlib1g-dev:arm64"]


# Packages files as apt keeps them: a name in several lists (the newest version wins, the first of equal
# ones), Package not always the first field, Provides with and without versions, a stanza without Version.
_PACKAGES_TEXTS = [
    "Package: debhelper\nVersion: 13.11.4\nArchitecture: all\nMulti-Arch: foreign\n"
    "Provides: debhelper-compat (= 13), debhelper-compat (= 12)\n\n"
    "Package: zlib1g-dev\nSource: zlib\nVersion: 1:1.2.13\nArchitecture: amd64\nMulti-Arch: same\n"
    "Provides: libz-dev\nSection: libdevel\n\n"
    "Package: noversion\nArchitecture: amd64\nProvides: ghost\n\n"
    "Version: 2.0\nPackage: bison\nArchitecture: amd64\nMulti-Arch: foreign\nProvides: yacc\n",
    "Package: bison\nVersion: 3.8\nArchitecture: amd64\nProvides: byacc-alike (= 1)\n\n"
    "Package: zlib1g-dev\nVersion: 1:1.2.13\nArchitecture: amd64\nMulti-Arch: no\n\n"
    "Package: old-lib-dev\nVersion: 1.0\nArchitecture: amd64\nMulti-Arch: same\nProvides: libz-dev (= 0.9)\n",
]


def test_indexed_archive_answers_as_the_parsed_one() -> None:
    from assemblage.builds.aptindex import IndexedArchive, _parse_packages

    lazy = IndexedArchive(_PACKAGES_TEXTS, "amd64")
    eager = BinaryArchive([p for text in _PACKAGES_TEXTS for p in _parse_packages(text)], "amd64")
    assert lazy.real == eager.real and list(lazy.real) == list(eager.real)
    assert lazy.real["bison"].version == "3.8" and lazy.real["zlib1g-dev"].multi_arch == "same"  # newest; first
    assert lazy.package("noversion") is None and lazy.provided_by("ghost") == []
    assert lazy.provided_by("yacc") == [] and lazy.provided_by("byacc-alike") == eager.providers["byacc-alike"]
    assert {k: sorted(v, key=repr) for k, v in lazy.providers.items()} == {
        k: sorted(v, key=repr) for k, v in eager.providers.items()
    }
    rel = PkgRelation.parse_relations(
        "debhelper-compat (= 13), libz-dev (>= 0.5), byacc-alike, nothere | bison, zlib1g-dev"
    )
    for host in ("amd64", "arm64"):
        assert lazy.satisfy(rel, host_arch=host) == eager.satisfy(rel, host_arch=host)
    assert IndexedArchive(_PACKAGES_TEXTS, "amd64").satisfy(rel).packages == [
        "bison",
        "debhelper",
        "old-lib-dev",
        "zlib1g-dev",
    ]


def test_debian_rules_plan_and_flags(tmp_path: Path) -> None:
    (tmp_path / "debian").mkdir()
    (tmp_path / "debian" / "rules").write_text("#!/usr/bin/make -f\n%:\n\tdh $@\n")
    (tmp_path / "debian" / "control").write_text(
        "Source: x\nBuild-Depends: debhelper-compat (= 13)\nBuild-Depends-Arch: libz-dev\n"
        "Build-Depends-Indep: texlive\n\nPackage: x\nArchitecture: any\n"
    )
    names = [c[0]["name"] for c in build_depends(tmp_path)]
    assert names == ["build-essential", "fakeroot", "debhelper-compat", "libz-dev"]  # not the -Indep ones
    tools = BuildTools(cc="/build/bin/cc", cxx="/build/bin/c++", src_dir="/build/src", which=shutil.which)
    cs = get_toolchain("clang-19").compilers("linux", "x86_64", "O0")
    env = debian_env(cs, tools, jobs=2)
    assert env["DEB_CFLAGS_SET"].split()[:1] == ["-O0"] and env["DEB_CPPFLAGS_SET"] == ""
    assert env["ASSEMBLAGE_COMPILER_LENIENT"] == "1"
    assert "nocheck" in env["DEB_BUILD_OPTIONS"] and "nostrip" in env["DEB_BUILD_OPTIONS"]
    (step,) = DebianRulesPlanner().plan(tmp_path, cs, tools, jobs=2)
    i = step.argv.index("dpkg-buildpackage")
    assert step.argv[i : i + 3] == ("dpkg-buildpackage", "--no-sign", "--rules-target=build-arch")
    # debhelper computes CFLAGS & co. (with the rules' MAINT_APPEND) only when the environment has none
    assert step.argv[0] == "env" and set(step.argv[1:i:2]) == {"-u"}
    assert {"CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS"} <= set(step.argv[2:i:2])
    cross = get_toolchain("gcc-12").compilers("linux", "aarch64", "O2")
    (step,) = DebianRulesPlanner().plan(tmp_path, cross, tools, jobs=1)
    assert "--host-arch=arm64" in step.argv and "--build-profiles=cross,nocheck" in step.argv


# ----------------------------------------------------------------- failed commands


def test_failures_ignore_probes(tmp_path: Path) -> None:
    f = tmp_path / "failures"
    f.write_text(
        "1\t/build/src\t-qversion\n"
        "1\t/build/src\t-c conftest.c -o conftest.o\n"
        "1\t/build/src/_b/CMakeFiles/CMakeScratch/TryCompile-x\t-c src.c\n"
        "1\t/build/src\t-E -\n"
        "1\t/build/src/lib\t-c bad.c -o bad.o\n"
        "1\t/build/src\t-o app main.o -lm\n"
        "1\t/build/src\t-o rounding -DEXTRA_ROUNDING=0 ./rounding.c\n"  # rsync tries until one compiles
        "ok\t/build/src\trounding\n"
    )
    got = read_failures(f)
    assert [(x.arguments, x.links) for x in got] == [("-c bad.c -o bad.o", False), ("-o app main.o -lm", True)]


def test_wrapper_records_a_failed_compile(tmp_path: Path) -> None:
    need("gcc-12")
    cs = get_toolchain("gcc-12").compilers("linux", "x86_64", "O2")
    cc, _ = write_wrappers(tmp_path / "bin", cs, "linux-x86_64-gcc-12-O2")
    assert (tmp_path / "bin" / "x86_64-linux-gnu-gcc").is_file()  # Debian's rules may call it so
    (tmp_path / "bad.c").write_text("int f(void) { return nope; }\n")
    record = tmp_path / "failures.log"
    r = subprocess.run(
        [str(cc), "-c", "bad.c", "-o", "bad.o"],
        cwd=tmp_path,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "ASSEMBLAGE_COMPILER_FAILURES": str(record)},
    )
    assert r.returncode != 0
    (failure,) = read_failures(record)
    assert failure.arguments == "-c bad.c -o bad.o" and failure.folder == str(tmp_path)


def test_clang_wrapper_keeps_gccs_warnings_as_warnings_when_asked(tmp_path: Path) -> None:
    need("clang-19")
    cs = get_toolchain("clang-19").compilers("linux", "x86_64", "O0")
    cc, _ = write_wrappers(tmp_path / "bin", cs, "linux-x86_64-clang-19-O0")
    (tmp_path / "old.c").write_text("f(void) { return g(); }\n")  # implicit int, implicit declaration
    env = {"PATH": "/usr/bin:/bin"}
    strict = subprocess.run([str(cc), "-c", "old.c"], cwd=tmp_path, capture_output=True, env=env, check=False)
    assert strict.returncode != 0  # clang 19's default
    lenient = subprocess.run(
        [str(cc), "-c", "old.c"],
        cwd=tmp_path,
        capture_output=True,
        check=False,
        env={**env, "ASSEMBLAGE_COMPILER_LENIENT": "1"},
    )
    assert lenient.returncode == 0, lenient.stderr


def test_plain_fallback_skips_tests_and_fuzzers_next_to_a_real_build_system(tmp_path: Path) -> None:
    for rel in ("src/main.c", "tests/test_main.c", "fuzz/fuzz_parse.c", "examples/demo.c", "src/parse_fuzzer.c"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("int main(void){return 0;}\n")
    assert [p.relative_to(tmp_path).as_posix() for p in PlainPlanner._sources(tmp_path)] == [
        "examples/demo.c",
        "fuzz/fuzz_parse.c",
        "src/main.c",
        "src/parse_fuzzer.c",
        "tests/test_main.c",
    ]
    (tmp_path / "SConstruct").write_text("Program('src/main.c')\n")
    assert [p.relative_to(tmp_path).as_posix() for p in PlainPlanner._sources(tmp_path)] == ["src/main.c"]


# ----------------------------------------------------------------- provisioning decisions


def test_local_provisioning_needs_the_setting(monkeypatch) -> None:
    monkeypatch.setattr(deps, "_host_packages", lambda: frozenset({"build-essential", "make"}))
    monkeypatch.delenv(deps.INSTALL_SETTING, raising=False)
    res = deps.Provisioner("local").provision(["libjansson-dev", "make"], io.StringIO())
    assert not res.ok and res.added == ["libjansson-dev"]
    assert "libjansson-dev" in res.message and "ASSEMBLAGE_INSTALL_DEPENDENCIES=1" in res.message
    assert deps.Provisioner("local").provision(["make"], io.StringIO()).ok
    with pytest.raises(Exception, match="oddly named"):
        deps.Provisioner("local").provision(["x; rm -rf /"], io.StringIO())


def test_image_tag_depends_on_base_and_sorted_set() -> None:
    a = deps.image_tag("sha256:1", ["b", "a"])
    assert a == deps.image_tag("sha256:1", ["a", "b", "a"]) and a.startswith("assemblage-deps:")
    assert a != deps.image_tag("sha256:2", ["a", "b"]) and a != deps.image_tag("sha256:1", ["a"])


# ----------------------------------------------------------------- selectors


SOURCES = """\
Package: cthing
Version: 1.0-1
Architecture: any
Section: libs
Build-Depends: debhelper-compat (= 13), zlib1g-dev
Files:
 aaa 1000 cthing_1.0-1.dsc
 bbb 50000 cthing_1.0.orig.tar.gz

Package: cthing
Version: 1.1-1
Architecture: any
Section: libs
Build-Depends: debhelper-compat (= 13), zlib1g-dev
Files:
 aaa 1000 cthing_1.1-1.dsc

Package: docsonly
Version: 1
Architecture: all
Section: libs
Build-Depends: debhelper-compat (= 13)

Package: goprog
Version: 1
Architecture: any
Section: libs
Build-Depends: debhelper-compat (= 13), dh-golang

Package: needsnew
Version: 1
Architecture: any
Section: libs
Build-Depends: debhelper-compat (= 99)

Package: utilc
Version: 2
Architecture: linux-any
Section: utils
Build-Depends: debhelper-compat (= 13)
"""


def test_index_pass(monkeypatch) -> None:
    cands = sel.parse_sources(SOURCES)
    assert [(c.package, c.version) for c in cands] == [
        ("cthing", "1.1-1"),
        ("docsonly", "1"),
        ("goprog", "1"),
        ("needsnew", "1"),
        ("utilc", "2"),
    ]
    archive = _archive()

    def ok(c) -> bool:
        return archive.satisfy(PkgRelation.parse_relations(c.build_depends)).ok

    s = DebianSelector(section="libs")
    assert [c.package for c in sel.index_candidates(cands, s, satisfiable=ok)] == ["cthing"]
    s = DebianSelector(section=["libs", "utils"], build_depends_satisfiable=False)
    assert [c.package for c in sel.index_candidates(cands, s, satisfiable=ok)] == ["cthing", "needsnew", "utilc"]


def test_licences() -> None:
    assert sel.license_allowed("Expat", ["mit"])
    assert sel.license_allowed("BSD-3-clause", ["bsd-3-clause"])
    assert sel.license_allowed("GPL-2+ or Artistic", ["gpl-2.0"])
    assert not sel.license_allowed("MIT and GPL-3+", ["mit"])
    assert not sel.license_allowed(None, ["mit"]) and sel.license_allowed(None, [])


def test_expand_is_seeded_and_checks_the_trees(tmp_path: Path, monkeypatch) -> None:
    import assemblage.sources.debian as debian_mod
    from assemblage.builds import aptindex

    names = [f"pkg{i:02d}" for i in range(30)]
    text = "\n\n".join(
        f"Package: {n}\nVersion: 1\nArchitecture: any\nSection: libs\nBuild-Depends: debhelper-compat (= 13)\n"
        for n in names
    )
    monkeypatch.setattr(debian_mod, "source_indexes", lambda cache, timeout: [Path("Sources")])
    monkeypatch.setattr(aptindex, "cat_index", lambda p: text)
    monkeypatch.setattr(BinaryArchive, "load", classmethod(lambda cls, arch="amd64": _archive()))
    fetched: list[str] = []

    def fake_fetch(package, *, suite, version, cache, timeout):
        fetched.append(package)
        tree = cache / "debian" / f"{package}_1"
        tree.mkdir(parents=True, exist_ok=True)
        n = int(package[3:])
        (tree / ("main.cc" if n % 3 == 0 else "main.c")).write_text("int main(){}\n")
        return {"path": tree.name, "version": "1", "license": "MIT" if n % 2 else "GPL-3+"}

    spec = DebianSource(debian={"language": "c", "licenses": ["mit"], "limit": 4, "seed": 7})
    one = [s.debian for s in sel.expand_debian(spec, cache=tmp_path / "a", fetch=fake_fetch)]
    assert len(one) == 4
    assert all(int(n[3:]) % 2 == 1 and int(n[3:]) % 3 != 0 for n in one)  # MIT and C only
    assert len(fetched) < 30  # lazily: only as many as needed
    two = [s.debian for s in sel.expand_debian(spec, cache=tmp_path / "b", fetch=fake_fetch)]
    other = [
        s.debian
        for s in sel.expand_debian(
            DebianSource(debian={"language": "c", "licenses": ["mit"], "limit": 4, "seed": 8}),
            cache=tmp_path / "c",
            fetch=fake_fetch,
        )
    ]
    assert one == two and one != other


def test_selector_in_recipes() -> None:
    spec = DebianSource.model_validate({"debian": {"section": "libs", "limit": 60, "seed": 7}})
    assert isinstance(spec.debian, DebianSelector) and spec.debian.limit == 60
    assert source_label(spec).startswith("debian:{")
    assert DebianSource.model_validate({"debian": "zlib"}).debian == "zlib"
    with pytest.raises(ValidationError, match="sectio"):
        DebianSource.model_validate({"debian": {"sectio": "libs"}})
    with pytest.raises(ValidationError, match="takes no version"):
        DebianSource.model_validate({"debian": {"section": "libs"}, "version": "1.0"})
    with pytest.raises(ValidationError, match="language"):
        DebianSource.model_validate({"debian": {"language": "rust"}})


def test_crawl_needs_no_network_for_plain_sources_and_refuses_bad_selectors() -> None:
    import json
    import sys

    from tests.conftest import REPO

    cmd = [sys.executable, "-c", "from assemblage.cli.main import main; main()", "crawl"]
    r = subprocess.run(
        [*cmd, str(REPO / "recipes" / "demo.yaml"), "--json"], capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sources"] == []  # debian: NAME and paths need no crawl
    for args in (["--debian", "{limit: 0}"], ["--debian", "[1, 2"], []):
        bad = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, check=False)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
