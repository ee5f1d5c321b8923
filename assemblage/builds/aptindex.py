"""Debian's archive indexes as apt keeps them: binary ``Packages`` and ``Contents``.

Two questions about the archive are answered here, both from the files apt
already keeps where the machine keeps them (``/var/lib/apt/lists``, listed by
``apt-get indextargets``, decompressed by ``apt-helper cat-file`` whatever
compression apt chose):

* which real packages satisfy a relation field (``Build-Depends``) for a host
  architecture and a set of build profiles (:meth:`BinaryArchive.satisfy`), the
  way ``apt-get build-dep`` reads it: arch restrictions ``[amd64 !i386]`` and
  profile formulas ``<!nocheck>`` are evaluated, the first alternative that the
  archive can satisfy is taken, a virtual package (``debhelper-compat (= 13)``)
  is satisfied by a real package that provides it;
* which packages ship a file (:func:`search_contents`), from Debian's
  ``Contents`` files, the index of ``apt-file`` (``apt-file update`` fetches them
  from the same mirrors into apt's lists; ``scripts/bootstrap.sh`` runs it on a
  fresh machine).

Measured here (2 cores, bookworm main + updates + security, 63k packages):
loading the Packages files takes about 3 s once per process; one search of
the Contents files for every pattern of a build takes about 4 s.
"""

from __future__ import annotations

import functools
import re
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from debian.debian_support import Version

from assemblage import _spawn
from assemblage.errors import BuildError

__all__ = [
    "BinaryArchive",
    "BinaryPackage",
    "Resolution",
    "apt_options",
    "cat_index",
    "contents_ready",
    "debian_arch",
    "index_files",
    "parse_relations",
    "search_contents",
]

APT_HELPER = "/usr/lib/apt/apt-helper"
# Debian architecture names of our configuration arches
_DEB_ARCH = {"x86_64": "amd64", "i686": "i386", "aarch64": "arm64", "armhf": "armhf"}
_DEB_CPU = {"amd64": "amd64", "i386": "i386", "arm64": "arm64", "armhf": "arm"}


def debian_arch(arch: str) -> str:
    """``x86_64`` -> ``amd64``, ``aarch64`` -> ``arm64`` (Debian's architecture names)."""
    try:
        return _DEB_ARCH[arch]
    except KeyError:
        raise BuildError(f"no Debian architecture for {arch!r}") from None


def apt_options() -> list[str]:
    """Extra ``-o`` options for apt (the setting ``apt_options``, whitespace-separated ``Key=Value``).

    Empty by default: the machine's own apt configuration and lists are used.
    """
    out: list[str] = []
    from assemblage.settings import read_setting

    for item in str(read_setting("apt_options", "")).split():
        out += ["-o", item]
    return out


_index_cache: dict[tuple, tuple[tuple, list[Path]]] = {}
_index_lock = threading.Lock()


def _apt_stamp(files: list[Path]) -> tuple:
    """What changes when apt's answer may: the folders of the lists (``apt-get update`` renames files into
    them) and the source lists. A vanished folder or file counts as a change."""
    out: list[tuple[str, int | None]] = []
    for p in sorted({f.parent for f in files} | {Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d")}):
        try:
            out.append((str(p), p.stat().st_mtime_ns))
        except OSError:
            out.append((str(p), None))
    return (tuple(out), all(f.is_file() for f in files))


def index_files(identifier: str, *, architecture: str | None = None) -> list[Path]:
    """The files of one index target (``Packages``, ``Contents-deb``, ``Sources``) apt has downloaded.

    Asked of ``apt-get indextargets`` once and remembered while the lists and the source lists are
    unchanged: apt rebuilds its whole package cache in memory for each call (about 0.5 s of CPU, and
    1.5 s of wall time on a busy machine), which every build of a Debian source paid again.
    """
    key = (identifier, architecture, tuple(apt_options()))
    with _index_lock:
        hit = _index_cache.get(key)
    if hit is not None and hit[1] and _apt_stamp(hit[1]) == hit[0]:
        return list(hit[1])
    files = _index_files(identifier, architecture=architecture)
    with _index_lock:
        _index_cache[key] = (_apt_stamp(files), files)
    return list(files)


def _index_files(identifier: str, *, architecture: str | None = None) -> list[Path]:
    query = [f"Identifier: {identifier}"]
    if architecture:
        query.append(f"Architecture: {architecture}")
    try:
        r = _spawn.run(
            ["apt-get", *apt_options(), "indextargets", "--format", "$(FILENAME)", *query],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError(f"apt-get indextargets failed: {exc}") from exc
    return [Path(line) for line in r.stdout.split() if line and Path(line).is_file()]


def cat_index(path: Path) -> str:
    """The text of an index file whatever its compression (lz4, xz, gz, none)."""
    try:
        r = _spawn.run([APT_HELPER, "cat-file", str(path)], capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError(f"cannot read the apt index {path}: {exc}") from exc
    if r.returncode != 0:
        raise BuildError(f"cannot read the apt index {path}: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout.decode("utf-8", "replace")


# ----------------------------------------------------------------- Packages


def parse_relations(text: str) -> list[list[dict]]:
    """``debian.deb822.PkgRelation.parse_relations`` without the empty relations of stray commas."""
    from debian.deb822 import PkgRelation

    items = [item for item in text.replace("\n", " ").split(",") if item.strip()]
    # python-debian types each relation as its TypedDict PkgRelation.ParsedRelation, which mypy does not take
    # for the plain dicts they are at run time (and that this module reads them as)
    return cast(list[list[dict]], PkgRelation.parse_relations(", ".join(items))) if items else []


@dataclass(frozen=True, slots=True)
class BinaryPackage:
    name: str
    version: str
    architecture: str  # amd64, all
    multi_arch: str  # no, same, foreign, allowed
    provides: tuple[tuple[str, str | None], ...] = ()  # (name, version or None)
    section: str = ""


@dataclass(kw_only=True)
class Resolution:
    """What a relation field needs: real packages to install, and the clauses nothing satisfies."""

    packages: list[str] = field(default_factory=list)  # sorted, unique; "name" or "name:arch"
    unsatisfiable: list[str] = field(default_factory=list)  # the clauses as written

    @property
    def ok(self) -> bool:
        return not self.unsatisfiable


_FIELD = re.compile(r"^(Package|Version|Architecture|Multi-Arch|Provides|Section):[ \t]*(.*)$", re.MULTILINE)
_PROVIDE = re.compile(r"^\s*([a-z0-9][a-z0-9+.\-]*)(?::\S+)?\s*(?:\(\s*=\s*([^)\s]+)\s*\))?\s*$")


def _parse_packages(text: str) -> Iterable[BinaryPackage]:
    for stanza in text.split("\n\n"):
        fields = dict(_FIELD.findall(stanza))
        name = fields.get("Package")
        if not name or "Version" not in fields:
            continue
        provides = []
        for item in fields.get("Provides", "").split(","):
            m = _PROVIDE.match(item)
            if m:
                provides.append((m.group(1), m.group(2)))
        yield BinaryPackage(
            name=name,
            version=fields["Version"],
            architecture=fields.get("Architecture", ""),
            multi_arch=fields.get("Multi-Arch", "no"),
            provides=tuple(provides),
            section=fields.get("Section", ""),
        )


_OPS = {
    "<<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b,
    ">=": lambda a, b: a >= b,
    ">>": lambda a, b: a > b,
    "<": lambda a, b: a <= b,
    ">": lambda a, b: a >= b,
}


def _version_ok(have: str | None, constraint: tuple[str, str] | None) -> bool:
    if constraint is None:
        return True
    if have is None:
        return False
    op, want = constraint
    return _OPS[op](Version(have), Version(want))


def _arch_matches(pattern: str, arch: str) -> bool:
    """Debian arch wildcards: ``any``, ``linux-any``, ``any-amd64``, an exact name."""
    if pattern in ("any", arch, "linux-any"):
        return True
    if pattern.startswith("any-"):
        return _DEB_CPU.get(arch) == pattern[4:] or arch == pattern[4:]
    return False


def _arch_ok(restrictions, host: str) -> bool:
    if not restrictions:
        return True
    enabled = [r for r in restrictions if r.enabled]
    if enabled:
        return any(_arch_matches(r.arch, host) for r in enabled)
    return not any(_arch_matches(r.arch, host) for r in restrictions)


def _profiles_ok(formula, profiles: frozenset[str]) -> bool:
    if not formula:
        return True
    return any(all((t.profile in profiles) == t.enabled for t in term) for term in formula)


def _show(alt: dict) -> str:
    text = alt["name"] + (f":{alt['archqual']}" if alt.get("archqual") else "")
    if alt.get("version"):
        text += f" ({alt['version'][0]} {alt['version'][1]})"
    return text


class BinaryArchive:
    """The binary packages apt knows for one architecture (and ``all``)."""

    def __init__(self, packages: Iterable[BinaryPackage], arch: str) -> None:
        self.arch = arch
        self.real: dict[str, BinaryPackage] = {}
        self.providers: dict[str, list[tuple[BinaryPackage, str | None]]] = {}
        for p in packages:
            old = self.real.get(p.name)
            if old is None or Version(p.version) > Version(old.version):
                self.real[p.name] = p
        for p in self.real.values():
            for name, version in p.provides:
                self.providers.setdefault(name, []).append((p, version))

    def package(self, name: str) -> BinaryPackage | None:
        """The newest real package called ``name``."""
        return self.real.get(name)

    def provided_by(self, name: str) -> list[tuple[BinaryPackage, str | None]]:
        """The real packages (their newest versions) that provide ``name``, with the version they provide."""
        return self.providers.get(name, [])

    @classmethod
    def load(cls, arch: str = "amd64") -> BinaryArchive:
        """The archive from apt's lists on this machine (cached per process and list files)."""
        files = tuple(sorted(index_files("Packages", architecture=arch)))
        if not files:
            raise BuildError(f"apt has no package lists for {arch}: run apt-get update (scripts/bootstrap.sh does)")
        stamp = tuple(f.stat().st_mtime_ns for f in files)
        return _load(files, stamp, arch)

    def candidate(self, alt: dict) -> str | None:
        """The real package that satisfies one alternative, or None."""
        name, constraint = alt["name"], alt.get("version")
        p = self.package(name)
        if p is not None and _version_ok(p.version, constraint):
            return p.name
        for provider, version in sorted(self.provided_by(name), key=lambda pv: pv[0].name):
            if constraint is None or _version_ok(version, constraint):
                return provider.name
        return None

    def satisfy(
        self, relations: Sequence[Sequence[dict]], *, host_arch: str | None = None, profiles: Iterable[str] = ()
    ) -> Resolution:
        """Resolve parsed relations (``debian.deb822.PkgRelation.parse_relations``) to packages.

        Restrictions are evaluated against ``host_arch`` (the architecture the
        package is built for). When the host is not the archive's architecture
        (a cross build), a library is installed for the host (``libz-dev:arm64``)
        and a tool (``Multi-Arch: foreign``, ``Architecture: all``, ``:native``)
        for the build machine, as ``apt-get build-dep -a`` does.
        """
        host = host_arch or self.arch
        active = frozenset(profiles)
        out = Resolution()
        chosen: set[str] = set()
        for clause in relations:
            clause = [a for a in clause if a.get("name")]  # a trailing comma parses as an empty relation
            alts = [a for a in clause if _arch_ok(a.get("arch"), host) and _profiles_ok(a.get("restrictions"), active)]
            if not alts:
                continue  # the whole clause is restricted away
            pick = None
            for alt in alts:
                pick = self.candidate(alt)
                if pick is not None:
                    if host != self.arch and alt.get("archqual") not in ("native", "any"):
                        real = self.package(pick)
                        assert real is not None
                        if real.architecture != "all" and real.multi_arch not in ("foreign", "allowed"):
                            pick = f"{pick}:{host}"
                    break
            if pick is None:
                out.unsatisfiable.append(" | ".join(_show(a) for a in alts))
            else:
                chosen.add(pick)
        out.packages = sorted(chosen)
        return out


_archive_lock = threading.Lock()


class IndexedArchive(BinaryArchive):
    """A :class:`BinaryArchive` over the text of ``Packages`` files, each stanza parsed when it is asked for.

    Parsing every stanza (63k packages, 52 MB) took about a second of CPU in each process that
    checked a Build-Depends, which asks for a few dozen names. Here the text is only scanned for
    the positions of its ``Package:`` and ``Provides:`` fields (about 0.15 s); a name's stanzas
    are parsed (by the same :func:`_parse_packages`) the first time it is asked for. The answers
    are those of ``BinaryArchive(every stanza parsed, arch)``: the same newest version per name
    (the first of equal ones, in file order), and providers taken from those newest versions.
    """

    _PACKAGE = re.compile(r"\nPackage:[ \t]*([^\n]*)")  # a literal start: a fast scan
    _PROVIDES = re.compile(r"\nProvides:[ \t]*([^\n]*)")

    def __init__(self, texts: Sequence[str], arch: str) -> None:
        self.arch = arch
        self._texts = list(texts)
        self._at: dict[str, list[tuple[int, int]]] = {}  # name -> (text, position of its Package field)
        self._provides: dict[str, list[str]] = {}  # provided name -> names of the packages whose stanza says so
        self._real: dict[str, BinaryPackage | None] = {}
        self._providers: dict[str, list[tuple[BinaryPackage, str | None]]] = {}
        for n, text in enumerate(self._texts):
            at = self._at
            first = self._PACKAGE.match("\n" + text[:1000])  # the first stanza has no newline before it
            if first is not None:
                at.setdefault(first.group(1), []).append((n, 0))
            for m in self._PACKAGE.finditer(text):
                name = m.group(1)
                if name in at:
                    at[name].append((n, m.start()))
                else:
                    at[name] = [(n, m.start())]
            for m in self._PROVIDES.finditer(text):
                start, end = self._stanza(n, m.start())
                own = self._PACKAGE.search("\n" + text[start:end])
                if own is None:
                    continue
                for item in m.group(1).split(","):
                    pm = _PROVIDE.match(item)
                    if pm:
                        names = self._provides.setdefault(pm.group(1), [])
                        if own.group(1) not in names:
                            names.append(own.group(1))

    def _stanza(self, n: int, pos: int) -> tuple[int, int]:
        """The extent of the stanza holding the field that starts at (or at the newline before) ``pos``."""
        text = self._texts[n]
        start = text.rfind("\n\n", 0, pos + 1)
        start = 0 if start < 0 else start + 2
        end = text.find("\n\n", pos + 1)
        return start, len(text) if end < 0 else end

    @property
    def real(self) -> dict[str, BinaryPackage]:  # type: ignore[override]
        return {name: p for name in self._at if (p := self.package(name)) is not None}

    @property
    def providers(self) -> dict[str, list[tuple[BinaryPackage, str | None]]]:  # type: ignore[override]
        return {name: found for name in self._provides if (found := self.provided_by(name))}

    def package(self, name: str) -> BinaryPackage | None:
        if name in self._real:
            return self._real[name]
        best = None
        for n, pos in self._at.get(name, ()):
            start, end = self._stanza(n, pos)
            for p in _parse_packages(self._texts[n][start:end]):
                if p.name == name and (best is None or Version(p.version) > Version(best.version)):
                    best = p
        self._real[name] = best
        return best

    def provided_by(self, name: str) -> list[tuple[BinaryPackage, str | None]]:
        if name not in self._providers:
            found = []
            for owner in self._provides.get(name, ()):
                p = self.package(owner)
                if p is not None:
                    found += [(p, version) for provided, version in p.provides if provided == name]
            self._providers[name] = found
        return self._providers[name]


@functools.lru_cache(maxsize=4)
def _load_cached(files: tuple[Path, ...], stamp: tuple[int, ...], arch: str) -> BinaryArchive:
    return IndexedArchive([cat_index(f) for f in files], arch)


def _load(files: tuple[Path, ...], stamp: tuple[int, ...], arch: str) -> BinaryArchive:
    with _archive_lock:  # one parse even when several builds ask at once
        return _load_cached(files, stamp, arch)


# ----------------------------------------------------------------- Contents


def contents_ready() -> bool:
    """Debian's Contents files (``apt-file update`` fetches them) are on this machine."""
    return bool(index_files("Contents-deb"))


_contents_lock = threading.Lock()
_LINE = re.compile(r"^(\S.*?)\s+(\S+)$")


def search_contents(patterns: Sequence[str], *, timeout: float = 300) -> list[tuple[str, str]]:
    """(package, path) of every file in the archive whose path matches one of ``patterns``.

    Patterns are POSIX extended regular expressions over the path as the
    Contents files write it (no leading ``/``), anchored with ``^`` and ``$``;
    they must also be valid Python regexes (the subset both share). One pass of
    ``grep -E`` over each Contents file decompressed by ``apt-helper
    cat-file``: 4 s for the 200 MB of bookworm's Contents here, where
    ``apt-file search`` took 8 s per pattern and 47 s for an alternation.
    Raises :class:`BuildError` naming the fix when the index is missing.
    """
    if not patterns:
        return []
    files = index_files("Contents-deb")
    if not files:
        raise BuildError(
            "no Contents index on this machine: apt-get install apt-file && apt-file update "
            "(scripts/bootstrap.sh apt test does both)"
        )
    grep_args: list[str] = []
    for p in patterns:
        grep_args += ["-e", p.removesuffix("$") + "[[:space:]]"]
    out: list[tuple[str, str]] = []
    with _contents_lock:  # two scans at once only slow each other down on 2 cores
        for f in files:
            try:
                cat = _spawn.popen([APT_HELPER, "cat-file", str(f)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                grep = _spawn.popen(
                    ["grep", "-E", *grep_args],
                    stdin=cat.stdout,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                assert cat.stdout is not None
                cat.stdout.close()
                found, err = grep.communicate(timeout=timeout)
                cat.wait(timeout=30)
            except subprocess.TimeoutExpired:
                cat.kill()
                grep.kill()
                raise BuildError(f"searching {f.name} gave up after {timeout:g} s") from None
            except OSError as exc:
                raise BuildError(f"cannot search the Contents index: {exc}") from exc
            if grep.returncode not in (0, 1):  # 1: nothing found
                raise BuildError(f"grep over {f.name} failed: {err.strip()[-300:]}")
            for line in found.splitlines():
                m = _LINE.match(line)
                if not m:
                    continue
                for qualified in m.group(2).split(","):
                    out.append((qualified.rsplit("/", 1)[-1], "/" + m.group(1)))
    return out
