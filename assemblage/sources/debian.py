"""Debian source packages through a private apt configuration that never touches /etc.

A fresh Debian machine has no ``deb-src`` lines. We read the machine's own
``deb`` entries (``/etc/apt/sources.list``, ``sources.list.d/*.list`` and
deb822 ``*.sources``), keep those of this release (suites named after
``VERSION_CODENAME``, e.g. ``bookworm``, ``bookworm-updates``,
``bookworm-security``), write them as ``deb-src`` into a private deb822 file
under ``CACHE/debian/apt`` and point apt at it::

    apt-get -o Dir::Etc::sourcelist=PRIVATE.sources -o Dir::Etc::sourceparts=-
            -o Dir::State::Lists=PRIVATE/lists -o Dir::Cache=PRIVATE/cache ...

A private ``apt-get update`` fills the private lists (once a day at most); then
``apt-get source --download-only`` fetches the ``.dsc`` and its tarballs into a
scratch folder and ``dpkg-source -x`` unpacks the patched tree, which is
published as ``CACHE/debian/SOURCE_VERSION``. When a version in the security
suite cannot be downloaded (mirrors and snapshots often lack it), the fetch
falls back to naming each configured suite in turn (``NAME/bookworm``).
"""

from __future__ import annotations

import email.utils
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assemblage.errors import SourceError
from assemblage.recipes.models import DebianSource
from assemblage.sources._util import key_digest, locked, publish, read_index, run, safe_name, temp_dir, write_index
from assemblage.sources.fetched import FetchedSource, parse_date, subdir
from assemblage.sources.kinds import Expansion, FetchJob, SourceKind, register
from assemblage.sources.licenses import debian_copyright_license, detect_license

__all__ = [
    "AptEntry",
    "entries_for_suite",
    "DebianKind",
    "fetch_debian",
    "parse_deb822_sources",
    "parse_dsc",
    "parse_one_line_sources",
    "render_deb822",
    "source_indexes",
    "system_deb_src_entries",
]

LISTS_MAX_AGE = 24 * 3600


@dataclass(frozen=True)
class AptEntry:
    """One ``URI SUITE COMPONENTS`` line of an apt configuration, with its options."""

    uri: str
    suite: str
    components: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = field(default=())  # e.g. (("Signed-By", "/usr/share/keyrings/x.gpg"),)


_KEEP_OPTIONS = {
    "signed-by": "Signed-By",
    "trusted": "Trusted",
    "check-valid-until": "Check-Valid-Until",
    "allow-insecure": "Allow-Insecure",
    "allow-weak": "Allow-Weak",
}


def parse_one_line_sources(text: str) -> list[AptEntry]:
    """``deb [signed-by=X] URI SUITE COMP...`` lines (``deb`` and ``deb-src``)."""
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
        if not m:
            continue
        options = []
        for opt in (m.group(2) or "").split():
            key, _, value = opt.partition("=")
            if key.lower() in _KEEP_OPTIONS:
                options.append((_KEEP_OPTIONS[key.lower()], value))
        entries.append(AptEntry(m.group(3), m.group(4), tuple(m.group(5).split()), tuple(options)))
    return entries


def parse_deb822_sources(text: str) -> list[AptEntry]:
    """deb822 stanzas (``Types: deb``, ``URIs``, ``Suites``, ``Components``, ``Signed-By``...)."""
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        current = None
        for line in stanza.splitlines():
            if line.startswith("#"):
                continue
            if line[:1] in (" ", "\t") and current:
                fields[current] += "\n" + line.strip()
                continue
            key, sep, value = line.partition(":")
            if sep:
                current = key.strip().lower()
                fields[current] = value.strip()
        if not fields or fields.get("enabled", "yes").lower() == "no":
            continue
        types = fields.get("types", "").split()
        if not {"deb", "deb-src"} & set(types):
            continue
        options = tuple((_KEEP_OPTIONS[k], v) for k, v in fields.items() if k in _KEEP_OPTIONS)
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                entries.append(AptEntry(uri, suite, tuple(fields.get("components", "").split()), options))
    return entries


def _codename(os_release: Path) -> str | None:
    try:
        text = os_release.read_text(encoding="utf-8")
    except OSError:
        return None
    m = re.search(r"^VERSION_CODENAME=\"?([A-Za-z0-9-]+)\"?\s*$", text, re.MULTILINE)
    return m.group(1) if m else None


def system_deb_src_entries(
    etc_apt: Path = Path("/etc/apt"), os_release: Path = Path("/etc/os-release")
) -> list[AptEntry]:
    """The machine's configured mirrors for this release, de-duplicated, in configuration order."""
    entries: list[AptEntry] = []
    main = etc_apt / "sources.list"
    if main.is_file():
        entries += parse_one_line_sources(main.read_text(encoding="utf-8", errors="replace"))
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            try:
                if path.name.endswith(".list"):
                    entries += parse_one_line_sources(path.read_text(encoding="utf-8", errors="replace"))
                elif path.name.endswith(".sources"):
                    entries += parse_deb822_sources(path.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
    # flat repositories ("SUITE/") and CD-ROMs have no source indexes to derive
    entries = [e for e in entries if e.components and not e.suite.endswith("/") and not e.uri.startswith("cdrom:")]
    codename = _codename(os_release)
    if codename:
        ours = [e for e in entries if e.suite == codename or e.suite.startswith(codename + "-")]
        entries = ours or entries
    merged: dict[tuple[str, str], AptEntry] = {}
    for e in entries:  # one entry per mirror and suite, components merged
        key = (e.uri.rstrip("/"), e.suite)
        if key in merged:
            old = merged[key]
            comps = old.components + tuple(c for c in e.components if c not in old.components)
            merged[key] = AptEntry(old.uri, old.suite, comps, old.options or e.options)
        else:
            merged[key] = e
    return list(merged.values())


def entries_for_suite(entries: list[AptEntry], suite: str) -> list[AptEntry]:
    """Mirror entries for ``suite`` derived from the configured ones of the same kind.

    ``bookworm-backports`` or ``trixie`` live on the mirror of the base release
    (``bookworm``); ``trixie-security`` on the mirror of ``bookworm-security``.
    """
    bases = sorted((e.suite for e in entries if "-" not in e.suite), key=len)
    if not bases:
        return []
    base = bases[0]
    suffix = suite[len(suite.split("-", 1)[0]) :]  # "", "-backports", "-security", "-updates"
    same = [e for e in entries if e.suite == base + suffix] or [e for e in entries if e.suite == base]
    return [AptEntry(e.uri, suite, e.components, e.options) for e in same]


def render_deb822(entries: list[AptEntry], *, types: str = "deb-src") -> str:
    stanzas = []
    for e in entries:
        lines = [f"Types: {types}", f"URIs: {e.uri}", f"Suites: {e.suite}", f"Components: {' '.join(e.components)}"]
        for key, value in e.options:
            if "\n" in value:  # an inline key block: continuation lines, blank lines as " ."
                body = "\n".join(" " + (ln if ln.strip() else ".") for ln in value.split("\n")[1:])
                lines.append(f"{key}: {value.splitlines()[0]}\n{body}".rstrip())
            else:
                lines.append(f"{key}: {value}")
        stanzas.append("\n".join(lines))
    return "\n\n".join(stanzas) + "\n"


class _Apt:
    """The private apt configuration under ``CACHE/debian/apt``."""

    def __init__(self, root: Path, entries: list[AptEntry], timeout: float) -> None:
        self.root = root
        self.entries = entries
        self.timeout = timeout
        self.sources = root / "private.sources"
        self.lists = root / "lists"
        self.cache = root / "cache"

    def options(self) -> list[str]:
        opts = [
            "-o",
            f"Dir::Etc::sourcelist={self.sources}",
            "-o",
            "Dir::Etc::sourceparts=-",
            "-o",
            f"Dir::State::Lists={self.lists}",
            "-o",
            f"Dir::Cache={self.cache}",
            "-o",
            "APT::Get::List-Cleanup=false",
            "-o",
            "Acquire::Retries=1",
            "-q",
        ]
        if os.geteuid() == 0:
            # apt would drop to _apt for downloads, which cannot write into our private folders
            opts += ["-o", "APT::Sandbox::User=root"]
        return opts

    def _has_lists(self) -> bool:
        return self.lists.is_dir() and any("Sources" in p.name for p in self.lists.iterdir())

    def ensure_updated(self, *, force: bool = False) -> None:
        if not self.entries:
            raise SourceError("debian sources need apt mirrors, but /etc/apt/sources.list and sources.list.d name none")
        text = render_deb822(self.entries)
        with locked(self.root / "update.lock"):
            (self.lists / "partial").mkdir(parents=True, exist_ok=True)
            (self.cache / "archives" / "partial").mkdir(parents=True, exist_ok=True)
            stamp = self.root / "updated"
            changed = not self.sources.is_file() or self.sources.read_text(encoding="utf-8") != text
            fresh = stamp.is_file() and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE
            if not force and not changed and fresh and self._has_lists():
                return
            self.sources.write_text(text, encoding="utf-8")
            result = run(
                ["apt-get", *self.options(), "update"],
                what="apt-get update (private deb-src lists)",
                timeout=self.timeout,
                check=False,
                env={"LC_ALL": "C"},
            )
            if not self._has_lists():
                detail = (result.stderr or result.stdout).strip()[-1500:]
                raise SourceError(f"apt-get update found no deb-src indexes for {self.sources}: {detail}")
            stamp.touch()

    def download(self, target: str, where: Path) -> subprocess.CompletedProcess[str]:
        return run(
            ["apt-get", *self.options(), "source", "--download-only", "--", target],
            what=f"apt-get source {target}",
            timeout=self.timeout,
            cwd=where,
            check=False,
            env={"LC_ALL": "C"},
        )


def parse_dsc(text: str) -> dict[str, str]:
    """The fields of a ``.dsc`` (its PGP armour, if any, is skipped); keys lower-case."""
    fields: dict[str, str] = {}
    current = None
    in_sig = False
    for line in text.splitlines():
        if line.startswith("-----BEGIN PGP SIGNATURE"):
            in_sig = True
        if in_sig or line.startswith(("-----BEGIN PGP SIGNED", "Hash:")):
            continue
        if line[:1] in (" ", "\t") and current:
            fields[current] += "\n" + line.strip()
            continue
        key, sep, value = line.partition(":")
        if sep and not key.startswith(" "):
            current = key.strip().lower()
            fields[current] = value.strip()
    return fields


def _changelog_date(tree: Path) -> str | None:
    try:
        with open(tree / "debian" / "changelog", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(" -- "):
                    _, _, stamp = line.rpartition(">")
                    return email.utils.parsedate_to_datetime(stamp.strip()).isoformat()
    except (OSError, ValueError, TypeError):
        return None
    return None


def _targets(package: str, suite: str | None, version: str | None, entries: list[AptEntry]) -> list[str]:
    if version:
        return [f"{package}={version}"]
    if suite:
        return [f"{package}/{suite}"]
    suites = []
    for e in entries:
        if e.suite not in suites:
            suites.append(e.suite)
    # the newest version first, then each suite by name (base release before -updates/-security)
    return [package] + [f"{package}/{s}" for s in sorted(suites, key=lambda s: (s.count("-"), s))]


def source_indexes(cache: Path, *, timeout: float, entries: list[AptEntry] | None = None) -> list[Path]:
    """The ``Sources`` index files of the private deb-src lists (updated once a day at most)."""
    apt = _Apt(cache / "debian" / "apt", system_deb_src_entries() if entries is None else entries, timeout)
    apt.ensure_updated()
    return sorted(p for p in apt.lists.iterdir() if "_Sources" in p.name and p.is_file())


def fetch_debian(
    package: str,
    *,
    suite: str | None,
    version: str | None,
    cache: Path,
    timeout: float,
    entries: list[AptEntry] | None = None,
) -> dict:
    """Fetch and unpack a Debian source package into ``cache/debian``; return the index record."""
    root = cache / "debian"
    root.mkdir(parents=True, exist_ok=True)
    spec_key = key_digest("debian", package, suite or "", version or "")
    hit = read_index(root, spec_key)
    if hit:
        return hit
    system = system_deb_src_entries() if entries is None else entries
    if suite and suite not in {e.suite for e in system}:
        # a suite the machine does not use (bookworm-backports, trixie): its own private lists
        derived = entries_for_suite(system, suite)
        if not derived:
            raise SourceError(f"debian:{package}: suite {suite!r} is not configured and no mirror to derive it from")
        apt = _Apt(root / f"apt-{safe_name(suite)}", derived, timeout)
    else:
        apt = _Apt(root / "apt", system, timeout)
    apt.ensure_updated()
    errors = []
    with temp_dir(root) as tmp:
        dsc = None
        for n, target in enumerate(_targets(package, suite, version, apt.entries)):
            scratch = tmp / f"dl{n}"
            scratch.mkdir()
            result = apt.download(target, scratch)
            dscs = sorted(scratch.glob("*.dsc"))
            if result.returncode == 0 and len(dscs) == 1:
                dsc = dscs[0]
                break
            message = (result.stderr or result.stdout or "").strip()
            errors.append(f"{target}: {message[-600:]}")
            if "Unable to find a source package" in message or "Can not find version" in message:
                break  # no other suite will know it either
        if dsc is None:
            raise SourceError(f"debian:{package}: apt-get source failed\n  " + "\n  ".join(errors))
        fields = parse_dsc(dsc.read_text(encoding="utf-8", errors="replace"))
        source = fields.get("source", package)
        got_version = fields.get("version")
        if not got_version:
            raise SourceError(f"debian:{package}: {dsc.name} has no Version field")
        final = root / f"{safe_name(source)}_{safe_name(got_version)}"
        with locked(root / "locks" / f"{final.name}.lock"):
            if not final.is_dir():
                tree = dsc.parent / "tree"
                run(
                    ["dpkg-source", "--no-copy", "-x", dsc.name, tree.name],
                    what=f"dpkg-source -x {dsc.name}",
                    timeout=timeout,
                    cwd=dsc.parent,
                    env={"LC_ALL": "C"},
                )
                publish(tree, final)
    copyright_file = final / "debian" / "copyright"
    try:
        license_ = debian_copyright_license(copyright_file.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        license_ = None
    record = {
        "path": final.name,
        "package": source,
        "version": got_version,
        "license": license_,
        "url": fields.get("homepage") or None,
        "last_update": _changelog_date(final),
    }
    write_index(root, spec_key, record)
    return record


@register
class DebianKind(SourceKind):
    """``debian:`` sources: a source package by name (fetched with apt), or a selector that expands into
    packages (:mod:`assemblage.sources.debian_select`)."""

    kind = "debian"
    model = DebianSource

    def label(self, spec: Any) -> str:
        if not isinstance(spec.debian, str):  # a selector
            return "debian:" + spec.debian.model_dump_json(exclude_defaults=True)
        label = f"debian:{spec.debian}"
        if spec.version:
            label += f"={spec.version}"
        elif spec.suite:
            label += f"/{spec.suite}"
        return label

    def short_name(self, spec: Any) -> str:
        return safe_name(spec.debian, "debian") if isinstance(spec.debian, str) else "debian-selector"

    def expands(self, spec: Any) -> Expansion | None:
        return None if isinstance(spec.debian, str) else "debian-selection"

    def at_most(self, spec: Any) -> int:
        return 1 if isinstance(spec.debian, str) else spec.debian.limit

    def fetch(self, spec: Any, job: FetchJob) -> FetchedSource:
        if not isinstance(spec.debian, str):
            raise SourceError(f"{job.label}: a debian selector is expanded into packages first (expand_debian)")
        rec = fetch_debian(spec.debian, suite=spec.suite, version=spec.version, cache=job.cache, timeout=job.timeout)
        root = job.cache / "debian" / rec["path"]
        return FetchedSource(
            kind="debian",
            label=job.label,
            name=job.name,
            path=subdir(root, spec, job.label),
            version=rec["version"],
            license=rec.get("license") or detect_license(root),
            url=rec.get("url"),
            last_update=parse_date(rec.get("last_update")),
        )

    def pin(self, spec: Any, fetched: FetchedSource) -> Any:
        return spec.model_copy(update={"version": fetched.version}) if fetched.version else spec
