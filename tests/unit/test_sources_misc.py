"""Labels and names, path sources, licence detection, DEP-5 and apt configuration parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from assemblage import sources
from assemblage.errors import SourceError
from assemblage.recipes.models import ArchiveSource, DebianSource, GithubQuery, GithubSource, GitSource, PathSource
from assemblage.sources import FetchedSource, fetch_source, source_label, source_name
from assemblage.sources._util import run, safe_name
from assemblage.sources.debian import (
    AptEntry,
    _targets,
    entries_for_suite,
    parse_deb822_sources,
    parse_dsc,
    parse_one_line_sources,
    render_deb822,
    system_deb_src_entries,
)
from assemblage.sources.licenses import classify_license_text, debian_copyright_license, detect_license


def test_exports_are_complete() -> None:
    assert set(sources.__all__) == {
        "FetchPolicy",
        "FetchedSource",
        "SourceKind",
        "fetch_source",
        "kind_of",
        "kinds",
        "pin_spec",
        "safe_extract",
        "source_label",
        "source_name",
        "source_pin",
        "tree_pin",
    }
    for name in sources.__all__:
        assert hasattr(sources, name)


def test_every_recipe_source_model_has_one_registered_kind() -> None:
    """A source kind is one registered class: every model the recipe accepts has one, and kinds answer for
    their own model only."""
    from assemblage.recipes.models import SOURCE_KINDS

    registered = sources.kinds()
    assert set(registered) == set(SOURCE_KINDS)
    for name, kind in registered.items():
        assert kind.model.model_fields["kind"].default == name  # the model the recipe parses into
    with pytest.raises(SourceError, match="not a source"):
        sources.kind_of(object())
    assert sources.kind_of(GithubSource(github=GithubQuery(query="q"))).expands(None) == "crawl"
    assert sources.kind_of(DebianSource(debian="zlib")).expands(DebianSource(debian="zlib")) is None


@pytest.mark.parametrize(
    "spec,label,name",
    [
        (PathSource(path="recipes/samples/calc/"), "recipes/samples/calc/", "calc"),
        (GitSource(git="https://github.com/madler/zlib"), "https://github.com/madler/zlib", "zlib"),
        (GitSource(git="/srv/repos/my repo.git/"), "/srv/repos/my repo.git/", "my-repo"),
        (ArchiveSource(archive="downloads/foo-1.0.tar.gz"), "downloads/foo-1.0.tar.gz", "foo-1.0"),
        (ArchiveSource(archive="https://x.org/dl/bar-2.zip?x=1"), "https://x.org/dl/bar-2.zip?x=1", "bar-2"),
        (DebianSource(debian="zlib"), "debian:zlib", "zlib"),
        (DebianSource(debian="jq", suite="bookworm"), "debian:jq/bookworm", "jq"),
        (DebianSource(debian="lua5.4", version="5.4.4-3"), "debian:lua5.4=5.4.4-3", "lua5.4"),
        (GithubSource(github=GithubQuery(query="language:c")), "github:language:c", "github"),
        (DebianSource(debian="zlib", name="../../etc"), "debian:zlib", "etc"),
    ],
)
def test_labels_and_names(spec, label: str, name: str) -> None:
    assert source_label(spec) == label
    assert source_name(spec) == name


@pytest.mark.parametrize(
    "raw,expected", [("a b", "a-b"), ("..", "source"), ("$(x);`y`", "x-y"), ("ok.v1_2-3", "ok.v1_2-3")]
)
def test_safe_name(raw: str, expected: str) -> None:
    assert safe_name(raw) == expected


def test_path_source_is_used_in_place(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "src").mkdir(parents=True)
    (project / "COPYING").write_text(GPL2)
    got = fetch_source(PathSource(path="proj"), base=tmp_path, cache=tmp_path / "cache")
    assert got == FetchedSource(
        kind="path", label="proj", name="proj", path=project.resolve(), license="GPL-2.0", last_update=got.last_update
    )
    assert got.last_update is not None
    assert fetch_source(PathSource(path="proj", subdir="src"), base=tmp_path, cache=tmp_path).path.name == "src"
    with pytest.raises(SourceError, match="no such folder"):
        fetch_source(PathSource(path="nope"), base=tmp_path, cache=tmp_path)


def test_subdir_symlink_cannot_escape(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "up").symlink_to("..")
    with pytest.raises(SourceError, match="outside"):
        fetch_source(PathSource(path=str(project), subdir="up"), base=tmp_path, cache=tmp_path)


def test_run_times_out_and_kills(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="timeout"):
        run(["sleep", "30"], what="sleeping", timeout=0.5)
    with pytest.raises(SourceError, match="not installed"):
        run(["no-such-program-xyz"], what="x", timeout=5)
    with pytest.raises(SourceError, match="false failed"):
        run(["false"], what="false", timeout=5)


# ------------------------------------------------------------------ licences

MIT = "Permission is hereby granted, free of charge, to any person obtaining a copy of this software"
BSD3 = """Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:
 * Neither the name of the copyright holder nor the names of its contributors
   may be used to endorse or promote products derived from this software."""
BSD2 = """Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:
1. Redistributions of source code must retain the above copyright notice."""
ZLIB = """This software is provided 'as-is', without any express or implied
warranty. ... 1. The origin of this software must not be misrepresented; you must not"""
ISC = """Permission to use, copy, modify, and/or distribute this software for any
purpose with or without fee is hereby granted, provided that the above"""
GPL2 = "GNU GENERAL PUBLIC LICENSE\n Version 2, June 1991\n Copyright (C) 1989, 1991 Free Software Foundation"
GPL3 = "GNU GENERAL PUBLIC LICENSE\n Version 3, 29 June 2007"
LGPL21 = "GNU LESSER GENERAL PUBLIC LICENSE\n Version 2.1, February 1999"
LGPL3 = "GNU LESSER GENERAL PUBLIC LICENSE\n Version 3, 29 June 2007"
APACHE = "Apache License\n Version 2.0, January 2004"


@pytest.mark.parametrize(
    "text,spdx",
    [
        (MIT, "MIT"),
        (BSD3, "BSD-3-Clause"),
        (BSD2, "BSD-2-Clause"),
        (ZLIB, "Zlib"),
        (ISC, "ISC"),
        (GPL2, "GPL-2.0"),
        (GPL3, "GPL-3.0"),
        (LGPL21, "LGPL-2.1"),
        (LGPL3, "LGPL-3.0"),
        (APACHE, "Apache-2.0"),
        ("/* SPDX-License-Identifier: BSD-2-Clause OR MIT */", "BSD-2-Clause OR MIT"),
        ("# " + MIT.replace(" a copy", "\n# a copy"), "MIT"),
        ("All rights reserved. Do not copy.", None),
        ("", None),
    ],
)
def test_classify_license_text(text: str, spdx: str | None) -> None:
    assert classify_license_text(text) == spdx


def test_detect_license_file_priority(tmp_path: Path) -> None:
    (tmp_path / "COPYING.LIB").write_text(LGPL21)
    (tmp_path / "COPYING").write_text(GPL3)
    assert detect_license(tmp_path) == "GPL-3.0"
    (tmp_path / "LICENSE.md").write_text(MIT)
    assert detect_license(tmp_path) == "MIT"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert detect_license(empty) is None
    (empty / "docs").mkdir()
    (empty / "docs" / "LICENCE.txt").write_text(ZLIB)
    assert detect_license(empty) == "Zlib"


DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: zlib
Source: http://zlib.net/

Files: debian/*
Copyright: 2000 Someone
License: GPL-2+
 long text
 .
 more

Files: *
Copyright: 1995-2022 Jean-loup Gailly and Mark Adler
License: Zlib
 This software is provided 'as-is'
"""


def test_debian_copyright() -> None:
    assert debian_copyright_license(DEP5) == "Zlib"
    no_star = DEP5.replace("Files: *\n", "Files: src/*\n")
    assert debian_copyright_license(no_star) == "GPL-2+"
    assert debian_copyright_license("This package was debianized by X.\n\n" + GPL3) == "GPL-3.0"
    assert debian_copyright_license("nothing useful") is None


# ------------------------------------------------------------------ apt configuration

ONE_LINE = """
# comment
deb http://deb.debian.org/debian bookworm main contrib
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://mirror.example/debian bookworm-updates main
deb-src http://deb.debian.org/debian bookworm main
deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main
deb cdrom:[Debian 12]/ bookworm main
"""

DEB822 = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main
"""


def test_parse_one_line_sources() -> None:
    entries = parse_one_line_sources(ONE_LINE)
    assert entries[0] == AptEntry("http://deb.debian.org/debian", "bookworm", ("main", "contrib"))
    assert entries[1].options == (("Signed-By", "/usr/share/keyrings/x.gpg"),)
    assert len(entries) == 5


def test_parse_deb822_sources() -> None:
    entries = parse_deb822_sources(DEB822)
    assert [(e.uri, e.suite) for e in entries] == [
        ("http://deb.debian.org/debian", "bookworm"),
        ("http://deb.debian.org/debian", "bookworm-updates"),
        ("http://deb.debian.org/debian-security", "bookworm-security"),
        ("https://deb.nodesource.com/node_20.x", "nodistro"),
    ]
    assert entries[0].options == (("Signed-By", "/usr/share/keyrings/debian-archive-keyring.gpg"),)


def test_system_entries_keep_this_release_only(tmp_path: Path) -> None:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text(ONE_LINE)
    (etc / "sources.list.d" / "debian.sources").write_text(DEB822)
    (etc / "sources.list.d" / "old.list.disabled").write_text("deb http://nope/ bookworm main\n")
    os_release = tmp_path / "os-release"
    os_release.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')
    entries = system_deb_src_entries(etc, os_release)
    assert [(e.uri, e.suite) for e in entries] == [
        ("http://deb.debian.org/debian", "bookworm"),
        ("http://mirror.example/debian", "bookworm-updates"),
        ("http://deb.debian.org/debian", "bookworm-updates"),
        ("http://deb.debian.org/debian-security", "bookworm-security"),
    ]
    assert entries[0].components == ("main", "contrib")
    assert entries[0].options == (("Signed-By", "/usr/share/keyrings/debian-archive-keyring.gpg"),)
    text = render_deb822(entries)
    assert "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main contrib" in text
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in text
    assert "nodesource" not in text and "cloud.google" not in text


def test_render_inline_key() -> None:
    key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBF\n-----END PGP PUBLIC KEY BLOCK-----"
    text = render_deb822([AptEntry("http://x/debian", "bookworm", ("main",), (("Signed-By", key),))])
    assert "Signed-By: -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBF\n -----END" in text


def test_download_targets() -> None:
    entries = [
        AptEntry("u", "bookworm-security", ("main",)),
        AptEntry("u", "bookworm", ("main",)),
        AptEntry("u", "bookworm-updates", ("main",)),
    ]
    assert _targets("jq", None, None, entries) == ["jq", "jq/bookworm", "jq/bookworm-security", "jq/bookworm-updates"]
    assert _targets("jq", "bookworm", None, entries) == ["jq/bookworm"]
    assert _targets("jq", "bookworm", "1.6-2.1", entries) == ["jq=1.6-2.1"]


def test_parse_dsc() -> None:
    text = """-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA512

Format: 3.0 (quilt)
Source: zlib
Binary: zlib1g, zlib1g-dev
Version: 1:1.2.13.dfsg-1
Homepage: http://zlib.net/
Checksums-Sha256:
 abc 123 zlib_1.2.13.dfsg.orig.tar.bz2

-----BEGIN PGP SIGNATURE-----
Version: fake
-----END PGP SIGNATURE-----
"""
    fields = parse_dsc(text)
    assert fields["source"] == "zlib" and fields["version"] == "1:1.2.13.dfsg-1"
    assert fields["homepage"] == "http://zlib.net/"
    assert "zlib_1.2.13" in fields["checksums-sha256"]


def test_fetched_source_round_trips_and_pins(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from assemblage.sources import pin_spec

    got = FetchedSource(
        kind="git", label="u", name="n", path=tmp_path, commit="a" * 40, last_update=datetime(2024, 1, 2, tzinfo=UTC)
    )
    assert FetchedSource.from_dict(got.to_dict()) == got
    import json

    json.dumps(got.to_dict())
    assert pin_spec(GitSource(git="u", ref="main"), got).ref == "a" * 40
    arch = FetchedSource(kind="archive", label="a", name="a", path=tmp_path, sha256="b" * 64)
    assert pin_spec(ArchiveSource(archive="a.tar.gz"), arch).sha256 == "b" * 64
    deb = FetchedSource(kind="debian", label="debian:zlib", name="zlib", path=tmp_path, version="1:1.2.13.dfsg-1")
    assert pin_spec(DebianSource(debian="zlib"), deb).version == "1:1.2.13.dfsg-1"
    path = PathSource(path="x")
    assert pin_spec(path, FetchedSource(kind="path", label="x", name="x", path=tmp_path)) is path


def test_entries_for_an_unconfigured_suite() -> None:
    signed = (("Signed-By", "/k.gpg"),)
    entries = [
        AptEntry("http://m/debian", "bookworm", ("main",), signed),
        AptEntry("http://m/debian", "bookworm-updates", ("main",), signed),
        AptEntry("http://m/debian-security", "bookworm-security", ("main",), signed),
    ]
    assert entries_for_suite(entries, "bookworm-backports") == [
        AptEntry("http://m/debian", "bookworm-backports", ("main",), signed)
    ]
    assert entries_for_suite(entries, "trixie") == [AptEntry("http://m/debian", "trixie", ("main",), signed)]
    assert [e.uri for e in entries_for_suite(entries, "trixie-security")] == ["http://m/debian-security"]
    assert entries_for_suite([], "trixie") == []
