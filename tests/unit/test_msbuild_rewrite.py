"""The msbuild planner: project rewriting on realistic VS2015-VS2022 files, and the argument lists."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lxml import etree

from assemblage.builds.msbuild import MsbuildPlanner, rewrite_project, solution_platforms
from assemblage.builds.plan import BuildTools
from assemblage.errors import BuildError
from assemblage.toolchains.registry import get_toolchain

# msbuild finds its own compilers (a Windows worker's Visual Studio): the wrappers and the lookup go unused
TOOLS = BuildTools(cc="cl", cxx="cl", src_dir=".", which=lambda command: None)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "windows" / "msbuild"
NS = {"m": "http://schemas.microsoft.com/developer/msbuild/2003"}
PROJECTS = [
    "vs2015/hello.vcxproj",
    "vs2017/zipper.vcxproj",
    "vs2019/tool.vcxproj",
    "vs2022/core/core.vcxproj",
    "vs2022/app/app.vcxproj",
]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    dst = tmp_path / "src"
    shutil.copytree(FIXTURES, dst)
    return dst


def _xml(path: Path) -> etree._Element:
    return etree.fromstring(path.read_bytes())


def _texts(root: etree._Element, xpath: str) -> list[str]:
    return [e.text for e in root.xpath(xpath, namespaces=NS)]


@pytest.mark.parametrize("rel", PROJECTS)
@pytest.mark.parametrize(("opt", "value"), [("Od", "Disabled"), ("O1", "MinSpace"), ("O2", "MaxSpeed"), ("Ox", "Full")])
def test_every_definition_gets_the_configuration(tree, rel, opt, value):
    path = tree / rel
    rewrite_project(path, toolset="v142", configuration="Release", platform="x64", optimization=opt)
    root = _xml(path)
    groups = root.xpath("//m:ItemDefinitionGroup", namespaces=NS)
    assert groups
    for g in groups:
        assert _texts(g, "m:ClCompile/m:Optimization") == [value]
        assert _texts(g, "m:ClCompile/m:DebugInformationFormat") == ["ProgramDatabase"]
        assert _texts(g, "m:Link/m:GenerateDebugInformation") == ["DebugFull"]  # never DebugFastLink
        if opt != "Od":
            assert _texts(g, "m:ClCompile/m:BasicRuntimeChecks") == ["Default"]
    # per-file overrides follow too (only vs2017/zipper has one; the others must not gain any)
    had = _texts(_xml(FIXTURES / rel), "//m:ClCompile[@Include]/m:Optimization")
    assert set(_texts(root, "//m:ClCompile[@Include]/m:Optimization")) == ({value} if had else set())
    toolsets = _texts(root, "//m:PlatformToolset")
    assert toolsets and set(toolsets) == {"v142"}
    for event in ("PreBuildEvent", "PreLinkEvent", "PostBuildEvent"):
        assert not root.xpath(f"//m:{event}", namespaces=NS)
    assert "Release|x64" in [e.get("Include") for e in root.xpath("//m:ProjectConfiguration", namespaces=NS)]


@pytest.mark.parametrize("rel", PROJECTS)
def test_everything_else_is_kept(tree, rel):
    path = tree / rel
    before = _xml(path)
    raw_before = path.read_bytes()
    rewrite_project(path, toolset="v143", configuration="Release", platform="x64", optimization="O2")
    after = _xml(path)
    raw_after = path.read_bytes()
    # namespace, root attributes, comments, items, globals, imports: unchanged
    assert after.tag == before.tag and dict(after.attrib) == dict(before.attrib)
    assert b"ns0:" not in raw_after and b"xmlns:" not in raw_after
    assert [c.text for c in before.iter(etree.Comment)] == [c.text for c in after.iter(etree.Comment)]
    for xp in (
        "//m:ClCompile/@Include",
        "//m:ClInclude/@Include",
        "//m:Import/@Project",
        "//m:ProjectGuid/text()",
        "//m:PreprocessorDefinitions/text()",
        "//m:ProjectReference/@Include",
        "//@Label",
    ):
        # (sets: cloning a missing platform repeats conditioned elements)
        assert set(map(str, before.xpath(xp, namespaces=NS))) == set(map(str, after.xpath(xp, namespaces=NS)))
    # byte-level conventions of Visual Studio: BOM, CRLF, the declaration
    assert raw_after.startswith(b"\xef\xbb\xbf") == raw_before.startswith(b"\xef\xbb\xbf")
    assert (b"\r\n" in raw_after) == (b"\r\n" in raw_before)
    if b"\r\n" in raw_before:
        assert raw_after.count(b"\n") == raw_after.count(b"\r\n")
    assert raw_after.lstrip(b"\xef\xbb\xbf").startswith(b'<?xml version="1.0" encoding="utf-8"?>')


def test_v140_gets_plain_debug(tree):
    path = tree / "vs2019/tool.vcxproj"  # has DebugFastLink
    rewrite_project(path, toolset="v140", configuration="Debug", platform="x64", optimization="Od")
    assert set(_texts(_xml(path), "//m:Link/m:GenerateDebugInformation")) == {"true"}


def test_rewrite_is_idempotent(tree):
    path = tree / "vs2015/hello.vcxproj"
    rewrite_project(path, toolset="v141", configuration="Debug", platform="Win32", optimization="Od")
    once = path.read_bytes()
    report = rewrite_project(path, toolset="v141", configuration="Debug", platform="Win32", optimization="Od")
    assert path.read_bytes() == once
    assert report.files == [] and report.changes == []


def test_new_elements_are_indented_like_their_siblings(tree):
    path = tree / "vs2022/core/core.vcxproj"  # has no ItemDefinitionGroup at all
    report = rewrite_project(path, toolset="v143", configuration="Release", platform="x64", optimization="O1")
    text = path.read_bytes().decode("utf-8-sig")
    assert "added an ItemDefinitionGroup" in " ".join(report.changes)
    assert "\r\n    <ClCompile>\r\n      <Optimization>MinSpace</Optimization>" in text
    # the new group sits before the C++ targets import, where MSBuild reads it
    root = _xml(path)
    kids = [etree.QName(e).localname for e in root if isinstance(e.tag, str)]
    assert kids.index("ItemDefinitionGroup") < max(i for i, k in enumerate(kids) if k == "Import")


def test_missing_platform_is_cloned_from_the_existing_one(tree):
    path = tree / "vs2017/zipper.vcxproj"
    report = rewrite_project(path, toolset="v141", configuration="Release", platform="x64", optimization="O2")
    root = _xml(path)
    assert any("added configuration Release|x64 cloned from Release|Win32" in c for c in report.changes)
    conds = [e.get("Condition") for e in root.xpath("//*[@Condition]")]
    assert any("Release|x64" in c for c in conds)
    cfg = root.xpath("//m:PropertyGroup[@Label='Configuration'][contains(@Condition, 'Release|x64')]", namespaces=NS)
    assert len(cfg) == 1 and _texts(cfg[0], "m:ConfigurationType") == ["StaticLibrary"]
    assert _texts(cfg[0], "m:PlatformToolset") == ["v141"]  # added where the source group had none


def test_property_sheets_are_rewritten_too(tree):
    sheet = tree / "vs2017/props/common.props"
    report = rewrite_project(
        tree / "vs2017/zipper.vcxproj", toolset="v143", configuration="Release", platform="Win32", optimization="Od"
    )
    assert sheet in report.files
    root = _xml(sheet)
    assert not root.xpath("//m:PreBuildEvent", namespaces=NS)
    assert _texts(root, "//m:ClCompile/m:Optimization") == ["Disabled"]
    assert _texts(root, "//m:PlatformToolset") == ["v143"]
    assert _texts(root, "//m:ThirdParty") == ["$(SolutionDir)..\\third_party"]


def test_sheets_outside_the_tree_are_not_touched(tree, tmp_path):
    outside = tmp_path / "outside.props"
    outside.write_text(
        '<Project xmlns="http://schemas.microsoft.com/developer/msbuild/2003">'
        "<ItemDefinitionGroup><PostBuildEvent><Command>x</Command></PostBuildEvent>"
        "</ItemDefinitionGroup></Project>"
    )
    before = outside.read_bytes()
    proj = tree / "vs2019/tool.vcxproj"
    proj.write_bytes(
        proj.read_bytes().replace(
            b'<ImportGroup Label="Shared">', b'<ImportGroup Label="Shared"><Import Project="..\\..\\outside.props" />'
        )
    )
    rewrite_project(proj, toolset="v142", configuration="Release", platform="x64", optimization="O2")
    assert outside.read_bytes() == before


def test_filters_files_are_left_alone(tree):
    filters = tree / "vs2015/hello.vcxproj.filters"
    before = filters.read_bytes()
    MsbuildPlanner().plan(tree / "vs2015", get_toolchain("msvc-v140").compilers("windows", "i686", "O1"), TOOLS)
    assert filters.read_bytes() == before


def test_bad_arguments_are_refused(tree):
    path = tree / "vs2015/hello.vcxproj"
    with pytest.raises(BuildError, match="PlatformToolset"):
        rewrite_project(path, toolset="v120", configuration="Release", platform="x64", optimization="O2")
    with pytest.raises(BuildError, match="optimisation"):
        rewrite_project(path, toolset="v143", configuration="Release", platform="x64", optimization="O3")
    broken = tree / "broken.vcxproj"
    broken.write_text("<Project><ItemGroup></Project>")
    with pytest.raises(BuildError, match="not well-formed"):
        rewrite_project(broken, toolset="v143", configuration="Release", platform="x64", optimization="O2")


def test_plan_builds_the_solution_with_its_platform_names(tree):
    root = tree / "vs2022"
    planner = MsbuildPlanner()
    assert planner.detect(root)
    steps = planner.plan(root, get_toolchain("msvc-v143").compilers("windows", "i686", "O2"), TOOLS, jobs=2)
    assert len(steps) == 1
    argv = steps[0].argv
    assert argv[:2] == ("msbuild", "demo.sln")
    for arg in (
        "/p:Configuration=Release",
        "/p:Platform=x86",
        "/p:PlatformToolset=v143",
        "/m:2",
        "/p:PostBuildEventUseInBuild=false",
    ):
        assert arg in argv
    assert all(isinstance(a, str) for a in argv)
    # both projects were rewritten for the pair the solution maps x86 to
    app = _xml(root / "app/app.vcxproj")
    assert _texts(app, "//m:ItemDefinitionGroup/m:ClCompile/m:Optimization") == ["MaxSpeed"]
    assert not app.xpath("//m:PostBuildEvent", namespaces=NS)


def test_plan_without_a_matching_solution_builds_each_project(tree):
    steps = MsbuildPlanner().plan(
        tree / "vs2017", get_toolchain("msvc-v141").compilers("windows", "x86_64", "Od"), TOOLS
    )
    assert [s.argv[1] for s in steps] == ["zipper.vcxproj"]
    assert "/p:Configuration=Debug" in steps[0].argv and "/p:Platform=x64" in steps[0].argv


def test_solution_parsing(tree):
    projects, pairs = solution_platforms(tree / "vs2022/demo.sln")
    assert [p.name for p in projects] == ["app.vcxproj", "core.vcxproj"]
    assert pairs == {("Debug", "x64"), ("Debug", "x86"), ("Release", "x64"), ("Release", "x86")}


def test_plan_refuses_non_msvc_toolchains(tree):
    with pytest.raises(BuildError, match="msvc"):
        MsbuildPlanner().plan(tree / "vs2022", get_toolchain("clang-19").compilers("windows", "x86_64", "O2"), TOOLS)


def test_detect_needs_a_project(tmp_path):
    (tmp_path / "main.c").write_text("int main(void){return 0;}")
    assert not MsbuildPlanner().detect(tmp_path)


@pytest.mark.parametrize("rel", PROJECTS)
def test_only_the_forced_settings_change(tree, rel):
    """A line-level diff: every removed line belongs to a setting we force or an event we drop."""
    import difflib

    path = tree / rel
    before = path.read_bytes().decode("utf-8-sig").splitlines()
    rewrite_project(path, toolset="v143", configuration="Release", platform="x64", optimization="Ox")
    after = path.read_bytes().decode("utf-8-sig").splitlines()
    forced = (
        "PlatformToolset",
        "Optimization",
        "DebugInformationFormat",
        "GenerateDebugInformation",
        "BasicRuntimeChecks",
        "BuildEvent",
        "LinkEvent",
        "<Command>",
        "<Message>",
        "</ItemDefinitionGroup>",
    )
    removed = [ln for ln in difflib.ndiff(before, after) if ln.startswith("- ")]
    assert all(any(k in ln for k in forced) for ln in removed), removed
