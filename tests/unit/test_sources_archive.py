"""Archives: safe extraction against hostile archives built here, and fetching (local, http) with sha256."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import stat
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from assemblage.errors import SourceError, UnsafeArchiveError
from assemblage.recipes.models import ArchiveSource
from assemblage.sources import fetch_source, safe_extract

# ------------------------------------------------------------------ builders


def _tar(path: Path, members: list[tuple], mode: str = "w:gz") -> Path:
    """members: (name, kind, payload) with kind file|dir|symlink|hardlink|chr|fifo."""
    with tarfile.open(path, mode) as tf:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            data = None
            if kind == "file":
                data = payload if isinstance(payload, bytes) else str(payload or "").encode()
                info.size = len(data)
                info.mode = 0o644
            elif kind == "exe":
                data = payload.encode()
                info.size = len(data)
                info.mode = 0o4755  # setuid must be dropped
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = payload
            elif kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = payload
            elif kind == "chr":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = 1, 3
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _zip(path: Path, members: list[tuple[str, str | bytes]], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def arena(tmp_path: Path) -> Path:
    """A folder whose only children are ``archives/`` and (after extraction) ``dest/``."""
    (tmp_path / "archives").mkdir()
    return tmp_path


def _assert_refused(arena: Path, archive: Path, member_fragment: str, **caps) -> UnsafeArchiveError:
    before = _snapshot(arena)
    dest = arena / "dest"
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, dest, **caps)
    message = str(info.value)
    assert archive.name in message
    assert member_fragment in message
    # nothing written anywhere: the destination is gone and nothing else appeared
    assert not dest.exists()
    assert _snapshot(arena) == before
    return info.value


# ------------------------------------------------------------------ hostile archives


def test_dotdot_member_is_refused(arena: Path) -> None:
    a = _tar(
        arena / "archives" / "dotdot.tar.gz", [("pkg/ok.c", "file", "int x;"), ("pkg/../../evil.txt", "file", "x")]
    )
    _assert_refused(arena, a, "evil.txt")
    assert not (arena / "evil.txt").exists()


def test_absolute_member_is_refused(arena: Path) -> None:
    target = arena / "abs_evil.txt"
    a = _tar(arena / "archives" / "abs.tar", [(str(target), "file", "x")], mode="w")
    _assert_refused(arena, a, "abs_evil.txt")
    assert not target.exists()


@pytest.mark.parametrize("absolute", [False, True])
def test_symlink_escape_then_write_through_it_is_refused(arena: Path, absolute: bool) -> None:
    outside = arena / "outside"
    outside.mkdir()
    link_target = str(outside) if absolute else "../../outside"
    a = _tar(
        arena / "archives" / "symlink.tar.gz",
        [
            ("pkg/", "dir", None),
            ("pkg/escape", "symlink", link_target),
            ("pkg/escape/pwned", "file", "written through a symlink"),
        ],
    )
    _assert_refused(arena, a, "escape")
    assert list(outside.iterdir()) == []


def test_symlink_written_last_through_tar_order_is_refused(arena: Path) -> None:
    """A member under a symlink is refused even when the file comes before the link in the archive."""
    a = _tar(
        arena / "archives" / "order.tar.gz",
        [
            ("pkg/escape/pwned", "file", "x"),
            ("pkg/escape", "symlink", "/tmp"),
        ],
    )
    _assert_refused(arena, a, "escape")


def test_symlink_chain_escape_is_refused(arena: Path) -> None:
    # 'b' -> '.' is harmless alone; 'l' -> 'b/..' looks inside lexically but resolves to the parent
    a = _tar(
        arena / "archives" / "chain.tar.gz",
        [
            ("top/b", "symlink", "."),
            ("top/c", "symlink", "b/b/b"),
            ("l", "symlink", "top/c/../.."),
        ],
    )
    _assert_refused(arena, a, "'l'")


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../etc/passwd"])
def test_hardlink_to_etc_passwd_is_refused(arena: Path, target: str) -> None:
    a = _tar(arena / "archives" / "hardlink.tar.gz", [("pkg/passwd", "hardlink", target)])
    passwd = Path("/etc/passwd").stat()
    _assert_refused(arena, a, "passwd")
    # no link to it was made: its link count is unchanged and nothing in the arena is the same file
    assert Path("/etc/passwd").stat().st_nlink == passwd.st_nlink
    assert not [
        p
        for p in arena.rglob("*")
        if p.is_file() and p.stat().st_ino == passwd.st_ino and p.stat().st_dev == passwd.st_dev
    ]


def test_hardlink_to_a_later_or_missing_member_is_refused(arena: Path) -> None:
    a = _tar(arena / "archives" / "fwd.tar.gz", [("pkg/a", "hardlink", "pkg/b"), ("pkg/b", "file", "x")])
    _assert_refused(arena, a, "pkg/a")


@pytest.mark.parametrize("kind", ["chr", "fifo"])
def test_device_and_fifo_members_are_refused(arena: Path, kind: str) -> None:
    a = _tar(arena / "archives" / f"{kind}.tar.gz", [("pkg/ok", "file", "x"), ("pkg/null", kind, None)])
    _assert_refused(arena, a, "pkg/null")


@pytest.mark.parametrize("name", ["../../zipslip.txt", "..\\..\\zipslip.txt", "/zipslip.txt", "ok/../../zipslip.txt"])
def test_zip_slip_is_refused(arena: Path, name: str) -> None:
    a = _zip(arena / "archives" / "slip.zip", [("ok/readme", "fine"), (name, "evil")])
    _assert_refused(arena, a, "zipslip.txt")
    assert not (arena / "zipslip.txt").exists()
    assert not Path("/zipslip.txt").exists()


def test_zip_symlink_escape_is_refused(arena: Path) -> None:
    a = _zip(arena / "archives" / "zlink.zip", [("ok/readme", "fine")], symlinks={"ok/up": "../../.."})
    _assert_refused(arena, a, "ok/up")


def test_archive_over_the_byte_cap_is_refused(arena: Path) -> None:
    a = _tar(arena / "archives" / "big.tar.gz", [("pkg/a", "file", b"\0" * 6000), ("pkg/b", "file", b"\0" * 6000)])
    _assert_refused(arena, a, "pkg/b", max_bytes=10_000)


def test_zip_over_the_byte_cap_is_refused(arena: Path) -> None:
    a = _zip(arena / "archives" / "big.zip", [("pkg/a", b"\0" * 50_000)])
    _assert_refused(arena, a, "pkg/a", max_bytes=10_000)


def test_archive_over_the_member_cap_is_refused(arena: Path) -> None:
    a = _tar(arena / "archives" / "many.tar.gz", [(f"pkg/f{i}", "file", "x") for i in range(12)])
    _assert_refused(arena, a, "pkg/f10", max_members=10)
    z = _zip(arena / "archives" / "many.zip", [(f"pkg/f{i}", "x") for i in range(12)])
    _assert_refused(arena, z, "pkg/f10", max_members=10)


def test_zip_that_lies_about_its_size_is_stopped_while_writing(arena: Path) -> None:
    a = _zip(arena / "archives" / "liar.zip", [("pkg/a", b"A" * 100_000)])
    data = bytearray(a.read_bytes())
    # shrink the declared uncompressed size in both headers to 10 bytes
    declared = (100_000).to_bytes(4, "little")
    count = 0
    pos = data.find(declared)
    while pos != -1:
        data[pos : pos + 4] = (10).to_bytes(4, "little")
        count += 1
        pos = data.find(declared, pos + 4)
    assert count == 2
    a.write_bytes(bytes(data))
    dest = arena / "dest"
    with pytest.raises(SourceError):
        safe_extract(a, dest, max_bytes=1000)
    assert not dest.exists()


def test_not_an_archive(tmp_path: Path) -> None:
    f = tmp_path / "plain.tar.gz"
    f.write_text("hello")
    with pytest.raises(SourceError, match="not a tar"):
        safe_extract(f, tmp_path / "dest")


def test_truncated_archive_is_a_source_error(tmp_path: Path) -> None:
    a = _tar(tmp_path / "t.tar.gz", [("pkg/a", "file", os.urandom(200_000))])
    a.write_bytes(a.read_bytes()[:5000])
    with pytest.raises(SourceError):
        safe_extract(a, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


# ------------------------------------------------------------------ good archives


@pytest.mark.parametrize("mode,suffix", [("w:gz", "tar.gz"), ("w:bz2", "tar.bz2"), ("w:xz", "tar.xz"), ("w", "tar")])
def test_tar_formats_unwrap_the_single_top_folder(tmp_path: Path, mode: str, suffix: str) -> None:
    a = _tar(
        tmp_path / f"foo-1.0.{suffix}",
        [
            ("foo-1.0/", "dir", None),
            ("foo-1.0/src/main.c", "file", "int main(void){return 0;}"),
            ("foo-1.0/configure", "exe", "#!/bin/sh\n"),
            ("foo-1.0/lib/libfoo.so.1", "file", "elf"),
            ("foo-1.0/lib/libfoo.so", "symlink", "libfoo.so.1"),
            ("foo-1.0/lib/copy", "hardlink", "foo-1.0/lib/libfoo.so.1"),
        ],
        mode=mode,
    )
    root = safe_extract(a, tmp_path / "dest")
    assert root == tmp_path / "dest" / "foo-1.0"
    assert (root / "src" / "main.c").read_text() == "int main(void){return 0;}"
    mode_bits = (root / "configure").stat().st_mode
    assert mode_bits & stat.S_IXUSR and not mode_bits & stat.S_ISUID
    assert os.readlink(root / "lib" / "libfoo.so") == "libfoo.so.1"
    assert (root / "lib" / "copy").read_text() == "elf"
    assert int((root / "src" / "main.c").stat().st_mtime) == 1_600_000_000


def test_zip_with_several_top_entries_is_not_unwrapped(tmp_path: Path) -> None:
    a = _zip(tmp_path / "multi.zip", [("a/x.c", "x"), ("b.c", "y")], symlinks={"a/link": "x.c"})
    root = safe_extract(a, tmp_path / "dest")
    assert root == tmp_path / "dest"
    assert (root / "a" / "x.c").read_text() == "x"
    assert os.readlink(root / "a" / "link") == "x.c"


def test_destination_must_be_empty(tmp_path: Path) -> None:
    a = _zip(tmp_path / "a.zip", [("x", "1")])
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep").write_text("mine")
    with pytest.raises(SourceError, match="empty folder"):
        safe_extract(a, tmp_path / "dest")
    assert (tmp_path / "dest" / "keep").read_text() == "mine"


# ------------------------------------------------------------------ fetching


def test_fetch_local_archive_records_sha256_and_reuses(tmp_path: Path) -> None:
    a = _tar(
        tmp_path / "proj-2.1.tar.gz", [("proj-2.1/main.c", "file", "int main;"), ("proj-2.1/LICENSE", "file", MIT_TEXT)]
    )
    digest = hashlib.sha256(a.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    spec = ArchiveSource(archive="proj-2.1.tar.gz")
    got = fetch_source(spec, base=tmp_path, cache=cache)
    assert got.kind == "archive" and got.name == "proj-2.1" and got.label == "proj-2.1.tar.gz"
    assert got.sha256 == digest
    assert got.license == "MIT"
    assert (got.path / "main.c").read_text() == "int main;"
    assert cache in got.path.parents
    again = fetch_source(ArchiveSource(archive=str(a), sha256=digest, name="other"), base=tmp_path, cache=cache)
    assert again.path == got.path  # same sha256, same checkout
    with pytest.raises(SourceError, match="sha256"):
        fetch_source(ArchiveSource(archive=str(a), sha256="0" * 64), base=tmp_path, cache=cache)


def test_fetch_archive_subdir(tmp_path: Path) -> None:
    a = _zip(tmp_path / "mono.zip", [("mono/lib/a.c", "x"), ("mono/app/b.c", "y")])
    got = fetch_source(ArchiveSource(archive=str(a), subdir="lib"), base=tmp_path, cache=tmp_path / "c")
    assert got.path.name == "lib" and (got.path / "a.c").exists()
    with pytest.raises(SourceError, match="subdir"):
        fetch_source(ArchiveSource(archive=str(a), subdir="nope"), base=tmp_path, cache=tmp_path / "c")


def test_hostile_archive_through_fetch_source_leaves_cache_clean(tmp_path: Path) -> None:
    a = _tar(tmp_path / "evil.tar.gz", [("x/../../../evil", "file", "x")])
    cache = tmp_path / "cache"
    with pytest.raises(UnsafeArchiveError, match="evil"):
        fetch_source(ArchiveSource(archive=str(a)), base=tmp_path, cache=cache)
    assert not (tmp_path / "evil").exists()
    assert [p.name for p in (cache / "archive").iterdir() if not p.name.startswith(("locks",))] == []


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_fetch_archive_over_http(tmp_path: Path) -> None:
    served = tmp_path / "www"
    served.mkdir()
    a = _tar(served / "web-0.3.tar.xz", [("web-0.3/web.c", "file", "void web(void){}")], mode="w:xz")
    digest = hashlib.sha256(a.read_bytes()).hexdigest()

    def handler(*args, **kw):
        return _Quiet(*args, directory=str(served), **kw)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/web-0.3.tar.xz?download=1"
    cache = tmp_path / "cache"
    try:
        got = fetch_source(ArchiveSource(archive=url), base=tmp_path, cache=cache)
        assert got.name == "web-0.3" and got.sha256 == digest and got.url == url
        assert (got.path / "web.c").exists()
        with pytest.raises(SourceError, match="HTTP 404"):
            fetch_source(ArchiveSource(archive=url.replace("web-0.3", "missing")), base=tmp_path, cache=cache)
    finally:
        server.shutdown()
        server.server_close()
    # the server is gone: the same URL, and the same sha256, come from the cache
    assert fetch_source(ArchiveSource(archive=url), base=tmp_path, cache=cache).path == got.path
    other_url = "http://127.0.0.1:9/elsewhere.tar.xz"
    assert fetch_source(ArchiveSource(archive=other_url, sha256=digest), base=tmp_path, cache=cache).path == got.path
    with pytest.raises(SourceError, match="download failed"):
        fetch_source(ArchiveSource(archive=other_url), base=tmp_path, cache=cache)


def test_archive_urls_are_http_https_or_a_local_file(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unsupported URL scheme 'ftp'"):
        ArchiveSource(archive="ftp://example.org/x.tar.gz")
    with pytest.raises(ValidationError, match="names a path on this machine"):
        ArchiveSource(archive="file://elsewhere/x.tar.gz")
    # file:// names a local file, read like a path
    a = _tar(tmp_path / "lib-1.tar.gz", [("lib-1/lib.c", "file", "int lib;")])
    got = fetch_source(ArchiveSource(archive=a.as_uri()), base=tmp_path, cache=tmp_path / "c")
    assert (got.path / "lib.c").read_text() == "int lib;" and got.url is None
    with pytest.raises(SourceError, match="not a tar"):
        fetch_source(ArchiveSource(archive="file:///etc/passwd"), base=tmp_path, cache=tmp_path / "c")


MIT_TEXT = """MIT License

Copyright (c) 2024 Someone

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction.
"""
