"""Choosing Debian source packages with a selector instead of by name.

``debian: {section: libs, language: c, licenses: [mit, zlib], limit: 60, seed: 7}``
reads the archive's ``Sources`` index (the private deb-src lists of
:mod:`assemblage.sources.debian`) and keeps, in two passes:

1. from the index alone: packages of the section(s) that build
   architecture-dependent binaries (``Architecture`` names ``any``, ``linux-any``
   or this machine's architecture, not only ``all``), no larger than
   ``max_size``, whose ``Build-Depends`` do not name another language's
   toolchain (Go, Rust, Java, Haskell, OCaml, Fortran, Pascal, Ada, Node, R...)
   and whose ``Testsuite`` is not another language's autopkgtest; with
   ``build_depends_satisfiable``, whose ``Build-Depends`` apt can satisfy from
   the archive (:meth:`~assemblage.builds.aptindex.BinaryArchive.satisfy`, with
   the ``nocheck`` profile);
2. in the order of a shuffle seeded by ``seed`` (the candidates sorted by name
   first, so the same index and seed give the same sample), each package is
   fetched (``apt-get source``, cached; the build reuses it) and kept when its
   ``debian/copyright`` licence (DEP-5) is in the allow-list and its tree's
   main compiled language (counted by file extension) is one asked for,
   until ``limit`` packages are kept.

Pass 2 fetches only as many packages as it needs, so a limit of 60 costs about
60 to 100 ``apt-get source`` calls (about 1 s each plus the download), once:
the verdicts are cached under ``CACHE/debian/select``.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from debian.debian_support import Version

from assemblage.errors import AssemblageError, SourceError
from assemblage.recipes.models import DebianSelector, DebianSource, parse_memory
from assemblage.sources._util import safe_name

__all__ = ["Candidate", "Selected", "expand_debian", "index_candidates", "license_allowed", "tree_language"]

_OTHER_TOOLCHAINS = re.compile(
    r"^(?:dh-golang|golang-.*|gccgo.*|cargo|rustc|dh-cargo|librust-.*|default-jdk.*|openjdk-.*|javahelper|"
    r"maven-debian-helper|gradle-debian-helper|ant|dh-nodejs|nodejs|node-.*|ghc|haskell-devscripts.*|"
    r"ocaml.*|dh-ocaml|gfortran.*|fp-compiler|fpc|gnat.*|erlang.*|elixir|dh-elpa|dh-r|r-base-dev|"
    r"mono-.*|dotnet.*|valac|dh-lisp|sbcl|ruby-.*|gem2deb|dh-ruby|julia|nim|ldc|gdc.*|dub|swi-prolog.*)$"
)
_OTHER_TESTSUITES = re.compile(r"autopkgtest-pkg-(?!c\b)(python|perl|go|r|nodejs|ruby|elpa|dkms|haskell|ocaml)")
_LANG_EXT = {
    "c": {".c"},
    "c++": {".cc", ".cpp", ".cxx", ".c++", ".C", ".hh", ".hpp", ".hxx"},
    "other": {
        ".rs",
        ".go",
        ".java",
        ".kt",
        ".f",
        ".f90",
        ".f95",
        ".for",
        ".pas",
        ".pp",
        ".adb",
        ".ads",
        ".hs",
        ".ml",
        ".d",
        ".cs",
        ".vala",
        ".swift",
        ".scala",
        ".zig",
        ".nim",
        ".m",
        ".mm",
    },
}
_LICENSE_ALIASES = {
    "expat": "mit",
    "mit/x11": "mit",
    "x11": "mit",
    "bsd-3": "bsd-3-clause",
    "bsd-2": "bsd-2-clause",
    "bsd-4": "bsd-4-clause",
    "zlib/libpng": "zlib",
    "apache-2": "apache-2.0",
    "isc": "isc",
    "public-domain": "public-domain",
    "bsl-1.0": "bsl-1.0",
    "boost-1.0": "bsl-1.0",
}


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """A source package as the Sources index describes it."""

    package: str
    version: str
    section: str
    architecture: str
    size: int
    build_depends: str
    testsuite: str = ""


@dataclass(frozen=True, kw_only=True)
class Selected:
    """A package the selector kept (or a verdict on one it looked at)."""

    package: str
    version: str
    section: str
    size: int
    license: str | None
    language: str | None
    kept: bool
    why: str = ""


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        current = None
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and current:
                fields[current] += "\n" + line.strip()
                continue
            key, sep, value = line.partition(":")
            if sep:
                current = key
                fields[key] = value.strip()
        if "Package" in fields:
            yield fields


def _size(files: str) -> int:
    total = 0
    for line in files.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            total += int(parts[1])
    return total


def parse_sources(text: str) -> list[Candidate]:
    """The packages of a Sources index, the newest version of each."""
    best: dict[str, Candidate] = {}
    for f in _stanzas(text):
        deps = ", ".join(v for k in ("Build-Depends", "Build-Depends-Arch") if (v := f.get(k)))
        c = Candidate(
            package=f["Package"],
            version=f.get("Version", ""),
            section=f.get("Section", ""),
            architecture=f.get("Architecture", ""),
            size=_size(f.get("Files", "")),
            build_depends=deps.replace("\n", " "),
            testsuite=f.get("Testsuite", ""),
        )
        old = best.get(c.package)
        if old is None or Version(c.version) > Version(old.version):
            best[c.package] = c
    return [best[k] for k in sorted(best)]


def _builds_binaries(arch_field: str, arch: str = "amd64") -> bool:
    archs = arch_field.split()
    return any(a in ("any", "linux-any", arch, f"any-{arch}") for a in archs)


def _relations(text: str) -> list:
    from assemblage.builds.aptindex import parse_relations

    return parse_relations(text)


def _other_language(c: Candidate) -> str | None:
    for clause in _relations(c.build_depends):
        for alt in clause:
            if _OTHER_TOOLCHAINS.match(alt["name"]):
                return f"Build-Depends on {alt['name']}"
    if _OTHER_TESTSUITES.search(c.testsuite):
        return f"Testsuite {c.testsuite}"
    return None


def index_candidates(
    candidates: list[Candidate], sel: DebianSelector, *, satisfiable: Callable[[Candidate], bool] | None = None
) -> list[Candidate]:
    """Pass 1: what the index alone can decide."""
    sections = {sel.section} if isinstance(sel.section, str) else set(sel.section or ())
    max_size = parse_memory(sel.max_size, minimum=1) if sel.max_size is not None else None
    excluded = set(sel.exclude)
    out = []
    for c in candidates:
        if c.package in excluded or not _builds_binaries(c.architecture):
            continue
        if sections and c.section.split("/")[-1] not in sections:
            continue
        if max_size is not None and c.size > max_size:
            continue
        if _other_language(c):
            continue
        if sel.build_depends_satisfiable and satisfiable is not None and not satisfiable(c):
            continue
        out.append(c)
    return out


def _norm_license(name: str) -> str:
    n = name.strip().lower().rstrip("+")
    n = re.sub(r"-or-later$|-only$", "", n)
    n = _LICENSE_ALIASES.get(n, n)
    m = re.fullmatch(r"(l?gpl|agpl)-(\d)(?:\.(\d))?", n)
    if m:
        n = f"{m.group(1)}-{m.group(2)}.{m.group(3) or '0'}"
    return n


def license_allowed(license_: str | None, allowed: list[str]) -> bool:
    """Whether a DEP-5 licence expression (``GPL-2+ or Artistic``, ``MIT and Zlib``) is within ``allowed``."""
    if not allowed:
        return True
    if not license_:
        return False
    ok = {_norm_license(a) for a in allowed}
    for alternative in re.split(r"\s+or\s+|\s*\|\s*", license_, flags=re.IGNORECASE):
        parts = re.split(r"\s+and\s+|\s*,\s*|\s*&\s*", alternative, flags=re.IGNORECASE)
        if all(_norm_license(p) in ok for p in parts if p.strip()):
            return True
    return False


def tree_language(root: Path, *, limit: int = 50_000) -> str | None:
    """The main compiled language of a tree by file count: ``c``, ``c++``, ``other``, or None."""
    counts = {"c": 0, "c++": 0, "other": 0}
    n = 0
    for _folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "debian"]
        for fn in files:
            ext = os.path.splitext(fn)[1]
            for lang, exts in _LANG_EXT.items():
                if ext in exts:
                    counts[lang] += 1
                    break
            n += 1
        if n > limit:
            break
    lang, count = max(counts.items(), key=lambda kv: kv[1])
    return lang if count else None


def _cached_verdict(folder: Path, c: Candidate) -> dict | None:
    try:
        return json.loads((folder / f"{safe_name(c.package)}_{safe_name(c.version)}.json").read_text())
    except (OSError, ValueError):
        return None


def expand_debian(
    spec: DebianSource,
    *,
    cache: Path,
    timeout: float = 600,
    fetch: Callable[..., dict] | None = None,
    report: Callable[[Selected], None] | None = None,
) -> list[DebianSource]:
    """The packages a selector picks, as ``debian: NAME`` sources (pass 1, then pass 2 lazily)."""
    from assemblage.builds.aptindex import BinaryArchive, cat_index
    from assemblage.errors import BuildError
    from assemblage.sources.debian import fetch_debian, source_indexes

    sel = spec.debian
    if not isinstance(sel, DebianSelector):
        return [spec]
    fetch = fetch or fetch_debian
    text = "\n\n".join(cat_index(p) for p in source_indexes(cache, timeout=timeout))
    candidates = parse_sources(text)
    satisfiable = None
    if sel.build_depends_satisfiable:
        try:
            archive = BinaryArchive.load()
        except BuildError as exc:
            raise SourceError(f"debian selector: cannot check Build-Depends: {exc}") from exc

        def satisfiable(c: Candidate) -> bool:
            return archive.satisfy(_relations(c.build_depends), profiles=("nocheck",)).ok

    pool = index_candidates(candidates, sel, satisfiable=satisfiable)
    random.Random(sel.seed).shuffle(pool)
    languages = {sel.language} if isinstance(sel.language, str) else set(sel.language)
    verdicts = cache / "debian" / "select"
    verdicts.mkdir(parents=True, exist_ok=True)
    kept: list[DebianSource] = []
    for c in pool:
        if len(kept) >= sel.limit:
            break
        verdict = _cached_verdict(verdicts, c)
        if verdict is None:
            try:
                rec = fetch(c.package, suite=spec.suite, version=None, cache=cache, timeout=timeout)
            except AssemblageError as exc:
                verdict = {"license": None, "language": None, "error": str(exc)[:300]}
            else:
                verdict = {
                    "license": rec.get("license"),
                    "version": rec.get("version"),
                    "language": tree_language(cache / "debian" / rec["path"]),
                }
            (verdicts / f"{safe_name(c.package)}_{safe_name(c.version)}.json").write_text(json.dumps(verdict))
        why = ""
        if verdict.get("error"):
            err = verdict["error"]
            why = "cannot fetch: " + (
                "the mirror lacks its files (404)" if " 404 " in err else err.splitlines()[0][:120]
            )
        elif verdict["language"] not in languages:
            why = f"main language {verdict['language']}"
        elif not license_allowed(verdict["license"], sel.licenses):
            why = f"licence {verdict['license']} not allowed"
        pick = Selected(
            package=c.package,
            version=verdict.get("version") or c.version,
            section=c.section,
            size=c.size,
            license=verdict["license"],
            language=verdict["language"],
            kept=not why,
            why=why,
        )
        if report:
            report(pick)
        if not why:
            kept.append(DebianSource(debian=c.package, suite=spec.suite))
    return kept
