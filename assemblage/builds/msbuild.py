"""MSBuild (Visual Studio) projects: find them, rewrite them for one
configuration, and plan the ``msbuild`` command. Runs on Windows workers.

:func:`rewrite_project` edits a ``.vcxproj`` (and the local ``.props``
property sheets it imports) with lxml, so namespaces, comments, conditions,
item lists and everything we do not touch stay exactly as they were
(including a UTF-8 BOM and CRLF line ends, which Visual Studio writes). What
it forces, in every ``ItemDefinitionGroup`` and ``PropertyGroup`` whatever its
``Condition`` (only one configuration is built, so the others do not matter,
and we cannot evaluate every condition MSBuild can):

* ``PlatformToolset`` = the toolset (``v140`` .. ``v143``);
* ``ClCompile/Optimization`` = ``Disabled``/``MinSpace``/``MaxSpeed``/``Full``
  for ``Od``/``O1``/``O2``/``Ox``; with optimisation on, ``BasicRuntimeChecks``
  = ``Default`` (``/RTC1`` is refused together with ``/O2``);
* ``ClCompile/DebugInformationFormat`` = ``ProgramDatabase`` (``/Zi``; ``/ZI``
  edit-and-continue is refused with optimisation) and
  ``Link/GenerateDebugInformation`` = ``DebugFull`` (``true`` for v140): every
  binary gets a full PDB, never a ``/DEBUG:FASTLINK`` one (which has no
  procedure records);
* the same ``Optimization``/``DebugInformationFormat`` in per-file metadata
  of ``ClCompile`` items, which would otherwise beat the definitions;
* ``PreBuildEvent``, ``PreLinkEvent`` and ``PostBuildEvent`` removed;
* the ``Configuration|Platform`` pair exists: a project with only ``Win32``
  gets ``x64`` cloned from it (its ``ProjectConfiguration`` item and every
  element whose ``Condition`` names the source pair).

The solution (``.sln``) is built when it maps the wanted pair; otherwise each
project is built on its own.
"""

from __future__ import annotations

import copy
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from assemblage.builds.plan import BuildTools, Step
from assemblage.errors import BuildError
from assemblage.toolchains.base import CompilerSet

__all__ = ["MsbuildPlanner", "RewriteReport", "rewrite_project", "OPTIMIZATION", "PLATFORMS"]

MSBUILD_NS = "http://schemas.microsoft.com/developer/msbuild/2003"
OPTIMIZATION = {"Od": "Disabled", "O1": "MinSpace", "O2": "MaxSpeed", "Ox": "Full"}
PLATFORMS = {"x86_64": "x64", "i686": "Win32"}
TOOLSETS = ("v140", "v141", "v142", "v143")
_EVENTS = ("PreBuildEvent", "PreLinkEvent", "PostBuildEvent")
_BOM = b"\xef\xbb\xbf"
_MAX_PROJECT_BYTES = 16 << 20
_SLN_PROJECT = re.compile(r'^Project\("\{[^}]+\}"\)\s*=\s*"[^"]*",\s*"([^"]+\.vcxproj)"', re.M)
_SLN_CONFIG = re.compile(r"^\s*([^|=\s][^|=]*)\|([^=\s]+)\s*=\s*\1\|\2\s*$", re.M)


@dataclass
class RewriteReport:
    """What :func:`rewrite_project` changed, file by file."""

    files: list[Path] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)


# -- XML helpers ---------------------------------------------------------------
def _q(root: etree._Element, name: str) -> str:
    ns = etree.QName(root).namespace
    return f"{{{ns}}}{name}" if ns else name


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _children(el: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in el if _local(c) == name]


def _append(parent: etree._Element, name: str) -> etree._Element:
    """A new last child named ``name``, indented like its siblings."""
    child = etree.SubElement(parent, _q(parent, name))
    others = [c for c in parent if c is not child]
    if others:
        last = others[-1]
        child.tail = last.tail  # the indent before </parent>
        last.tail = parent.text  # the indent of a child line
    else:
        prev = parent.getprevious()
        above = prev.tail if prev is not None else (gp.text if (gp := parent.getparent()) is not None else None)
        indent = (above or "\n").rsplit("\n", 1)[-1]
        parent.text = "\n" + indent + "  "
        child.tail = "\n" + indent
    return child


def _insert_after(el: etree._Element, new: etree._Element) -> None:
    """Put ``new`` right after ``el`` on its own line, at ``el``'s indentation."""
    prev = el.getprevious()
    parent = el.getparent()
    indent = prev.tail if prev is not None else (parent.text if parent is not None else None)
    el.addnext(new)
    new.tail = el.tail
    el.tail = indent


def _remove(el: etree._Element) -> None:
    """Remove ``el`` and its line, keeping the whitespace around it tidy."""
    parent = el.getparent()
    assert parent is not None  # a setting inside the project, never its root
    prev = el.getprevious()
    if prev is not None:
        prev.tail = el.tail
    else:
        parent.text = el.tail
    parent.remove(el)


def _set_child(parent: etree._Element, name: str, value: str, report: list[str], where: str) -> None:
    found = _children(parent, name)
    if not found:
        _append(parent, name).text = value
        report.append(f"{where}: added {name}={value}")
        return
    for child in found:
        if (child.text or "") != value:
            report.append(f"{where}: {name} {child.text!r} -> {value!r}")
            child.text = value


def _read_plain(path: Path) -> bytes:
    """A project file's bytes: never through a link (the tree is the repository's), a regular file, capped."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise BuildError(f"{path}: cannot open the project file without following links: {exc}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise BuildError(f"{path}: not a regular file")
        raw = fh.read(_MAX_PROJECT_BYTES + 1)
    if len(raw) > _MAX_PROJECT_BYTES:
        raise BuildError(f"{path}: project file over {_MAX_PROJECT_BYTES} bytes")
    return raw


def _load(path: Path) -> tuple[etree._ElementTree, bool, bool]:
    raw = _read_plain(path)
    bom = raw.startswith(_BOM)
    crlf = b"\r\n" in raw
    parser = etree.XMLParser(remove_blank_text=False, resolve_entities=False, no_network=True, huge_tree=False)
    try:
        tree = etree.ElementTree(etree.fromstring(raw, parser))
    except etree.XMLSyntaxError as exc:
        raise BuildError(f"{path}: not well-formed XML: {exc}") from None
    return tree, bom, crlf


def _save(path: Path, tree: etree._ElementTree, bom: bool, crlf: bool, original: bytes) -> bool:
    body = etree.tostring(tree, xml_declaration=False, encoding="utf-8")
    # lxml writes "<a/>" and the namespace first; Visual Studio writes "<a />" and
    # keeps the root's attribute order: restore both (">" never appears unescaped
    # in attribute values or text, so a tag end is unambiguous).
    body = re.sub(rb"(?<! )/>", b" />", body)
    text = original.removeprefix(_BOM)
    old_start = re.search(rb"<Project\b[^>]*>", text)
    new_start = re.search(rb"<Project\b[^>]*>", body)
    if (
        old_start
        and new_start
        and sorted(re.findall(rb'\S+="[^"]*"', old_start.group(0)))
        == sorted(re.findall(rb'\S+="[^"]*"', new_start.group(0)))
    ):
        body = body[: new_start.start()] + old_start.group(0) + body[new_start.end() :]
    if text.startswith(b"<?xml"):  # keep the declaration exactly as it was written
        end = text.index(b"?>") + 2
        body = text[:end] + b"\n" + body
    if crlf:
        body = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if original.rstrip(b"\r\n") != original and not body.endswith(b"\n"):
        body += b"\r\n" if crlf else b"\n"
    out = (_BOM if bom else b"") + body
    if out == original:
        return False
    path.write_bytes(out)
    return True


# -- the rewrite ---------------------------------------------------------------
def _pair_conditions(root: etree._Element) -> list[str]:
    return [(item.get("Include") or "") for item in root.iter(_q(root, "ProjectConfiguration"))]


def _ensure_pair(root: etree._Element, configuration: str, platform: str, report: list[str]) -> None:
    pairs = _pair_conditions(root)
    want = f"{configuration}|{platform}"
    if not pairs or want in pairs:
        return
    source = next((p for p in pairs if p.split("|")[0] == configuration), None) or next(
        (p for p in pairs if p.split("|")[-1] == platform), pairs[0]
    )
    src_cfg, _, src_plat = source.partition("|")
    for el in list(root.iter(_q(root, "ProjectConfiguration"))):
        if el.get("Include") == source:
            clone = copy.deepcopy(el)
            clone.set("Include", want)
            for child in clone:
                if _local(child) == "Configuration":
                    child.text = configuration
                elif _local(child) == "Platform":
                    child.text = platform
            _insert_after(el, clone)
            break
    pattern = re.compile(re.escape(f"{src_cfg}|{src_plat}"), re.I)
    for el in list(root.iter()):
        cond = el.get("Condition") if isinstance(el.tag, str) else None
        if cond and pattern.search(cond):
            clone = copy.deepcopy(el)
            clone.set("Condition", pattern.sub(want, cond))
            _insert_after(el, clone)
    report.append(f"added configuration {want} cloned from {source}")


def _rewrite_tree(
    root: etree._Element,
    *,
    toolset: str,
    optimization: str,
    where: str,
    report: list[str],
    project: bool,
    extra_options: str = "",
) -> None:
    q = lambda n: _q(root, n)  # noqa: E731
    for name in _EVENTS:
        for el in list(root.iter(q(name))):
            _remove(el)
            report.append(f"{where}: removed {name}")
    for el in root.iter(q("PlatformToolset")):
        if el.text != toolset:
            report.append(f"{where}: PlatformToolset {el.text!r} -> {toolset!r}")
            el.text = toolset
    if project:
        config_groups = [g for g in root.iter(q("PropertyGroup")) if g.get("Label") == "Configuration"]
        for g in config_groups:
            if not _children(g, "PlatformToolset"):
                _set_child(g, "PlatformToolset", toolset, report, where)
    groups = list(root.iter(q("ItemDefinitionGroup")))
    if project and not groups:
        groups = [_new_item_definition_group(root)]
        report.append(f"{where}: added an ItemDefinitionGroup")
    for g in groups:
        cl = _children(g, "ClCompile") or [_append(g, "ClCompile")]
        link = _children(g, "Link") or [_append(g, "Link")]
        for c in cl:
            _set_child(c, "Optimization", OPTIMIZATION[optimization], report, where)
            _set_child(c, "DebugInformationFormat", "ProgramDatabase", report, where)
            if optimization != "Od":
                _set_child(c, "BasicRuntimeChecks", "Default", report, where)
            if extra_options:
                _set_child(c, "AdditionalOptions", f"{extra_options} %(AdditionalOptions)", report, where)
        for ln in link:
            _set_child(ln, "GenerateDebugInformation", debug_information(toolset), report, where)
    # per-file metadata on ClCompile items beats the item definitions
    for item in root.iter(q("ClCompile")):
        if item.get("Include") is None:
            continue
        for meta, value in (
            ("Optimization", OPTIMIZATION[optimization]),
            ("DebugInformationFormat", "ProgramDatabase"),
        ):
            for el in _children(item, meta):
                if el.text != value:
                    report.append(f"{where}: {item.get('Include')}: {meta} {el.text!r} -> {value!r}")
                    el.text = value


def debug_information(toolset: str) -> str:
    """``Link/GenerateDebugInformation`` for a full PDB: ``DebugFull`` (``/DEBUG:FULL``)
    where the toolset knows it (v141+), ``true`` (``/DEBUG``, full in VS2015) for v140.
    A ``/DEBUG:FASTLINK`` PDB has no procedure records: no ground truth."""
    return "true" if toolset == "v140" else "DebugFull"


def _new_item_definition_group(root: etree._Element) -> etree._Element:
    group = etree.Element(_q(root, "ItemDefinitionGroup"))
    targets = [i for i in root.iter(_q(root, "Import")) if (i.get("Project") or "").endswith("Microsoft.Cpp.targets")]
    if targets:
        prev = targets[0].getprevious()
        indent = prev.tail if prev is not None else root.text
        targets[0].addprevious(group)
        group.tail = indent
    else:
        root.append(group)
    return group


def _local_property_sheets(path: Path, root: etree._Element, within: Path) -> list[Path]:
    """Property sheets the project imports by a plain relative path that stay inside ``within``."""
    out = []
    within = within.resolve()
    for imp in root.iter(_q(root, "Import")):
        proj = imp.get("Project") or ""
        if "$(" in proj or not proj.lower().endswith(".props"):
            continue
        p = (path.parent / proj.replace("\\", "/")).resolve()
        if p.is_file() and within in p.parents:
            out.append(p)
    return out


def rewrite_project(
    path: str | Path,
    *,
    toolset: str,
    configuration: str,
    platform: str,
    optimization: str,
    extra_options: str = "",
    windows_sdk: str | None = None,
    within: str | Path | None = None,
) -> RewriteReport:
    """Rewrite one ``.vcxproj`` (and its local ``.props`` sheets) in place; see the module docstring.

    Property sheets are rewritten only when they lie inside ``within`` (the
    source tree; default: the project's folder), never elsewhere on disk.
    ``extra_options`` go to ``ClCompile/AdditionalOptions``; ``windows_sdk``
    sets ``WindowsTargetPlatformVersion``.
    """
    path = Path(path)
    if toolset not in TOOLSETS:
        raise BuildError(f"unknown PlatformToolset {toolset!r}; expected one of {', '.join(TOOLSETS)}")
    if optimization not in OPTIMIZATION:
        raise BuildError(f"unknown MSVC optimisation {optimization!r}; expected one of {', '.join(OPTIMIZATION)}")
    if configuration not in ("Debug", "Release"):
        raise BuildError(f"configuration must be Debug or Release, not {configuration!r}")
    if platform not in ("Win32", "x64"):
        raise BuildError(f"platform must be Win32 or x64, not {platform!r}")
    report = RewriteReport()
    original = _read_plain(path)
    tree, bom, crlf = _load(path)
    root = tree.getroot()
    _ensure_pair(root, configuration, platform, report.changes)
    _rewrite_tree(
        root,
        toolset=toolset,
        optimization=optimization,
        where=path.name,
        report=report.changes,
        project=True,
        extra_options=extra_options,
    )
    if windows_sdk:
        for el in root.iter(_q(root, "WindowsTargetPlatformVersion")):
            el.text = windows_sdk
    if _save(path, tree, bom, crlf, original):
        report.files.append(path)
    for sheet in _local_property_sheets(path, root, Path(within) if within else path.parent):
        sheet_original = _read_plain(sheet)
        stree, sbom, scrlf = _load(sheet)
        _rewrite_tree(
            stree.getroot(),
            toolset=toolset,
            optimization=optimization,
            where=sheet.name,
            report=report.changes,
            project=False,
        )
        if _save(sheet, stree, sbom, scrlf, sheet_original):
            report.files.append(sheet)
    return report


# -- the planner -----------------------------------------------------------------
def _find(root: Path, suffix: str, depth: int = 3) -> list[Path]:
    out: list[Path] = []
    stack = [(root, 0)]
    while stack:
        d, k = stack.pop()
        try:
            entries = sorted(d.iterdir())
        except OSError:
            continue
        for e in entries:
            if e.is_symlink():
                continue
            if e.is_file() and e.suffix.lower() == suffix:
                out.append(e)
            elif e.is_dir() and k < depth and not e.name.startswith("."):
                stack.append((e, k + 1))
    return sorted(out)


def solution_platforms(sln: Path) -> tuple[list[Path], set[tuple[str, str]]]:
    """The projects a solution lists and its solution-level Configuration|Platform pairs."""
    text = sln.read_text(encoding="utf-8-sig", errors="replace")
    projects = [(sln.parent / p.replace("\\", "/")) for p in _SLN_PROJECT.findall(text)]
    block = re.search(r"GlobalSection\(SolutionConfigurationPlatforms\)(.*?)EndGlobalSection", text, re.S)
    pairs = {(c.strip(), p.strip()) for c, p in _SLN_CONFIG.findall(block.group(1))} if block else set()
    return projects, pairs


def _opt_of(compilers: CompilerSet) -> str:
    for f in compilers.cflags:
        if f.lstrip("/-") in OPTIMIZATION:
            return f.lstrip("/-")
    return "Od"


class MsbuildPlanner:
    """Visual Studio solutions and projects, built by ``msbuild`` on a Windows worker."""

    name = "msbuild"

    def detect(self, root: Path) -> bool:
        return bool(_find(root, ".sln", 1) or _find(root, ".vcxproj", 3))

    def plan(self, root: Path, compilers: CompilerSet, tools: BuildTools, *, jobs: int = 1) -> list[Step]:
        """Rewrite the projects under ``root`` (a private copy) and return the msbuild step(s)."""
        if not compilers.toolchain.startswith("msvc-"):
            raise BuildError(f"msbuild builds need an msvc-v14x toolchain, not {compilers.toolchain}")
        toolset = compilers.toolchain.removeprefix("msvc-")
        opt = _opt_of(compilers)
        configuration = "Debug" if opt == "Od" else "Release"
        platform = PLATFORMS.get(compilers.arch)
        if platform is None:
            raise BuildError(f"msbuild: no Visual Studio platform for {compilers.arch}")
        extra = " ".join(f for f in compilers.cflags if f.lstrip("/-") not in OPTIMIZATION and f not in ("/Zi", "-Zi"))
        projects = _find(root, ".vcxproj", 3)
        if not projects:
            raise BuildError(f"no .vcxproj under {root}")
        for p in projects:
            rewrite_project(
                p,
                toolset=toolset,
                configuration=configuration,
                platform=platform,
                optimization=opt,
                extra_options=extra,
                within=root,
            )
        targets: list[tuple[Path, str]] = []
        for sln in _find(root, ".sln", 1):
            _, pairs = solution_platforms(sln)
            names = ("x86", "Win32") if platform == "Win32" else ("x64",)
            sln_platform = next((n for n in names if (configuration, n) in pairs), None)
            if sln_platform:
                targets = [(sln, sln_platform)]
                break
        if not targets:
            targets = [(p, platform) for p in projects]
        common = (
            "/nologo",
            "/nr:false",
            f"/m:{max(1, jobs)}",
            "/t:Build",
            "/v:minimal",
            f"/p:Configuration={configuration}",
            f"/p:PlatformToolset={toolset}",
            "/p:PreBuildEventUseInBuild=false",
            "/p:PreLinkEventUseInBuild=false",
            "/p:PostBuildEventUseInBuild=false",
            "/p:RunCodeAnalysis=false",
        )
        return [
            Step(
                name=f"msbuild {t.name}",
                argv=("msbuild", str(t.relative_to(root)), *common, f"/p:Platform={plat}"),
                cwd=".",
                phase="build",
            )
            for t, plat in targets
        ]
