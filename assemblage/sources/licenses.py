"""Which licence a source tree carries, from its LICENSE/COPYING files or Debian's DEP-5 file.

Classification is by distinctive phrases of each licence's text, not by a full
text match: good enough to label a corpus (MIT, BSD-2/3-Clause, Apache-2.0,
GPL/LGPL/AGPL, Zlib, ISC, MPL-2.0, BSL-1.0, Unlicense), and ``None`` when
unsure. An ``SPDX-License-Identifier:`` line in a licence file wins.

We wrote this rather than pull in a licence scanner (scancode-toolkit, a few
hundred MB with native dependencies) because the corpus only needs the
licence family, and a dozen phrases give that.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["classify_license_text", "debian_copyright_license", "detect_license"]

_LICENSE_FILE = re.compile(r"^(licen[cs]e|copying|copyright|unlicense)([._-].*)?$", re.IGNORECASE)
_SPDX = re.compile(r"SPDX-License-Identifier:\s*([A-Za-z0-9.+-]+(?:\s+(?:OR|AND|WITH)\s+[A-Za-z0-9.+-]+)*)")
_MAX_READ = 256 * 1024


def _norm(text: str) -> str:
    # drop comment leaders and collapse whitespace, so a licence pasted into a header still matches
    text = re.sub(r"(?m)^\s*(#|//|\*|/\*|\*/|;|--|!)+", " ", text)
    text = text.replace("\u2019", "'").replace("`", "'")
    return re.sub(r"\s+", " ", text).lower()


def _has(text: str, *phrases: str) -> bool:
    return all(p in text for p in phrases)


def classify_license_text(text: str) -> str | None:
    """The SPDX identifier of the licence ``text`` is, or ``None`` when not recognised."""
    m = _SPDX.search(text)
    if m:
        return m.group(1).strip()
    t = _norm(text)
    if "gnu affero general public license" in t:
        return "AGPL-3.0"
    if "gnu lesser general public license" in t:
        return "LGPL-3.0" if _has(t, "version 3") else "LGPL-2.1"
    if "gnu library general public license" in t:
        return "LGPL-2.0"
    if "gnu general public license" in t:
        head = t[:3000]
        if "version 3" in head:
            return "GPL-3.0"
        if "version 2" in head:
            return "GPL-2.0"
        if "version 1" in head:
            return "GPL-1.0"
        return None
    if "apache license" in t and "version 2.0" in t:
        return "Apache-2.0"
    if "mozilla public license" in t and "2.0" in t:
        return "MPL-2.0"
    if "boost software license" in t:
        return "BSL-1.0"
    if "this is free and unencumbered software released into the public domain" in t:
        return "Unlicense"
    if re.search(
        r"permission to use, copy, modify, (and/or|and) distribute this software for any purpose "
        r"with or without fee is hereby granted",
        t,
    ):
        return "ISC"
    if "permission is hereby granted, free of charge, to any person obtaining a copy" in t:
        return "MIT"
    if _has(
        t,
        "provided 'as-is', without any express or implied warranty",
        "the origin of this software must not be misrepresented",
    ):
        return "Zlib"
    if "redistribution and use in source and binary forms" in t:
        if "all advertising materials mentioning features" in t:
            return "BSD-4-Clause"
        if re.search(
            r"(neither the name|the names? of (its|the) (contributors|authors|copyright holders?)"
            r"|may not be used to endorse or promote)",
            t,
        ):
            return "BSD-3-Clause"
        return "BSD-2-Clause"
    return None


def _candidates(root: Path) -> list[Path]:
    try:
        entries = [p for p in root.iterdir() if _LICENSE_FILE.match(p.name)]
    except OSError:
        return []

    def rank(p: Path) -> tuple[int, int, str]:
        n = p.name.lower()
        kind = 0 if n.startswith(("licen", "unlicense")) else 1 if n.startswith("copying") else 2
        # COPYING before COPYING.LIB, LICENSE before LICENSE.third-party
        return (kind, len(n), n)

    return sorted((p for p in entries if p.is_file() and not p.is_symlink()), key=rank)


def detect_license(root: Path) -> str | None:
    """Look for LICENSE/LICENCE/COPYING files at the top of ``root`` (then in one level of folders)."""
    for folder in (
        root,
        *sorted(p for p in _safe_dirs(root) if p.name.lower() in {"doc", "docs", "license", "licenses"}),
    ):
        for path in _candidates(folder):
            try:
                with open(path, "rb") as f:
                    text = f.read(_MAX_READ).decode("utf-8", "replace")
            except OSError:
                continue
            found = classify_license_text(text)
            if found:
                return found
    return None


def _safe_dirs(root: Path) -> list[Path]:
    try:
        return [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def _dep5_paragraphs(text: str) -> list[dict[str, str]]:
    paragraphs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    field = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, field = {}, None
            continue
        if line[0] in " \t":
            if field:
                current[field] += "\n" + line.strip()
            continue
        if line.startswith("#"):
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        field = name.strip().lower()
        current[field] = value.strip()
    if current:
        paragraphs.append(current)
    return paragraphs


def debian_copyright_license(text: str) -> str | None:
    """The licence named by a ``debian/copyright`` file.

    DEP-5 (machine-readable): the ``License`` of the ``Files: *`` paragraph,
    else the first ``License`` field. Free-form files fall back to
    :func:`classify_license_text`.
    """
    paragraphs = _dep5_paragraphs(text)
    machine_readable = bool(paragraphs) and "format" in paragraphs[0]
    if machine_readable:
        first = None
        for para in paragraphs:
            lic = para.get("license", "").split("\n", 1)[0].strip()
            if not lic:
                continue
            if first is None:
                first = lic
            if para.get("files", "").split() == ["*"] or "*" in para.get("files", "").split():
                return lic
        if first:
            return first
    return classify_license_text(text)
