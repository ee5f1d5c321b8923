"""Real ``apt-get source`` through the private apt configuration (needs the machine's Debian mirror).

Works on a fresh Debian machine without any deb-src line: the deb-src entries
are derived from the configured deb mirrors, and nothing under /etc/apt or
/var/lib/apt changes.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from assemblage.errors import SourceError
from assemblage.recipes.models import DebianSource
from assemblage.sources import fetch_source
from assemblage.sources.debian import system_deb_src_entries
from tests.conftest import unavailable

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _debian() -> None:
    if shutil.which("apt-get") is None:
        unavailable("apt-get is not installed (not a Debian machine)")
    if shutil.which("dpkg-source") is None:
        unavailable("dpkg-source is missing: apt-get install dpkg-dev")
    if not system_deb_src_entries():
        unavailable("no apt mirrors configured in /etc/apt")


def _state(*folders: str) -> dict[str, float]:
    out = {}
    for folder in folders:
        root = Path(folder)
        if root.exists():
            for p in [root, *root.rglob("*")]:
                try:
                    out[str(p)] = p.lstat().st_mtime
                except OSError:
                    pass
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("debian-cache")


def test_hello(cache: Path) -> None:
    before = _state("/etc/apt", "/var/lib/apt/lists")
    got = fetch_source(DebianSource(debian="hello"), base=Path.cwd(), cache=cache)
    assert _state("/etc/apt", "/var/lib/apt/lists") == before
    assert got.kind == "debian" and got.label == "debian:hello" and got.name == "hello"
    assert got.version and got.version.startswith("2.")
    assert got.license and "GPL" in got.license
    assert got.url and "gnu.org" in got.url
    assert got.last_update is not None
    assert (got.path / "debian" / "changelog").is_file()
    assert (got.path / "configure").is_file()
    assert cache in got.path.parents


def test_zlib_with_dep5_licence_and_reuse(cache: Path) -> None:
    got = fetch_source(DebianSource(debian="zlib"), base=Path.cwd(), cache=cache)
    assert got.license == "Zlib"
    assert got.version and ".dfsg" in got.version
    assert (got.path / "zlib.h").is_file() and (got.path / "debian" / "copyright").is_file()
    start = time.monotonic()
    again = fetch_source(DebianSource(debian="zlib"), base=Path.cwd(), cache=cache)
    assert again == got
    assert time.monotonic() - start < 0.5  # from the cache, no apt
    # the exact version found is the same checkout
    pinned = fetch_source(DebianSource(debian="zlib", version=got.version), base=Path.cwd(), cache=cache)
    assert pinned.path == got.path and pinned.label == f"debian:zlib={got.version}"


def test_suite_and_binary_package_names(cache: Path) -> None:
    codename = system_deb_src_entries()[0].suite.split("-")[0]
    got = fetch_source(DebianSource(debian="zlib1g-dev", suite=codename), base=Path.cwd(), cache=cache)
    assert got.path.name.startswith("zlib_")  # the binary package maps to its source package


def test_unknown_package(cache: Path) -> None:
    with pytest.raises(SourceError, match="no-such-package-xyz"):
        fetch_source(DebianSource(debian="no-such-package-xyz"), base=Path.cwd(), cache=cache)


def test_private_lists_are_reused(cache: Path) -> None:
    stamp = cache / "debian" / "apt" / "updated"
    assert stamp.is_file()
    mtime = stamp.stat().st_mtime
    fetch_source(DebianSource(debian="hello", subdir="src"), base=Path.cwd(), cache=cache)
    assert stamp.stat().st_mtime == mtime
    assert os.listdir(cache / "debian" / "apt" / "lists")


def test_falls_back_to_a_suite_whose_files_exist(cache: Path) -> None:
    """On mirrors/snapshots where the security suite's files 404 (jq here), another suite's version is used."""
    got = fetch_source(DebianSource(debian="jq"), base=Path.cwd(), cache=cache)
    assert got.version and got.version.startswith("1.6")
    assert got.license == "MIT"
    assert (got.path / "src").is_dir()
