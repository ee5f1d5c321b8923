"""The reference in docs/ covers what the code has.

Every list here is generated from the real objects (the recipe's JSON Schema, the
SQLAlchemy metadata, the settings model, the Typer app, the error classes), so a key,
column, setting, command or option added to the code without a line in the docs fails
this test, and the message names the item and the file (and section) it belongs in.

Conventions the docs follow (and that these tests read):

- docs/recipes.md names every recipe key by its path in backticks: `build.timeout`,
  `sources[].git`, `sources[].debian.section`, `exclude[].opt`.
- docs/dataset.md has one heading per table, ``### `binaries` ``, and names each column in
  backticks inside that table's section.
- docs/settings.md has one table row per setting holding its variable (`ASSEMBLAGE_API_PORT`),
  its TOML key (`api_port`) and its default; settings-file-only keys by path (`fleet.groups.*.max`).
- docs/cli.md has one heading per command, ``### `assemblage recipe check` ``, naming in its
  section each option (`--json`) and argument (`RECIPE`); a command with ``--json`` shows the
  shape in a ```json block; the exit codes are a table in the section "Exit codes".
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _read(name: str) -> str:
    path = DOCS / name
    assert path.is_file(), f"docs/{name} is missing"
    return path.read_text(encoding="utf-8")


def _spans(text: str) -> set[str]:
    """Every inline code span (`...`) of a Markdown text."""
    return set(re.findall(r"`([^`\n]+)`", text))


def _sections(text: str) -> dict[str, str]:
    """Heading whose text starts with a code span -> that span, mapped to the text up to the next heading."""
    out: dict[str, str] = {}
    parts = re.split(r"^(#{1,6} .*)$", text, flags=re.M)
    for heading, body in zip(parts[1::2], parts[2::2]):
        m = re.match(r"#{1,6} `([^`]+)`", heading)
        if m:
            out[m.group(1)] = out.get(m.group(1), "") + body
    return out


def _section_named(text: str, title: str) -> str:
    parts = re.split(r"^(#{1,6} .*)$", text, flags=re.M)
    for heading, body in zip(parts[1::2], parts[2::2]):
        if heading.lstrip("#").strip().lower() == title.lower():
            return body
    raise AssertionError(f"no section '{title}'")


def schema_keys(schema: dict[str, Any]) -> set[str]:
    """Every key path of a JSON Schema: objects by `.`, array items by `[]`, free-form maps by `.*`."""
    defs = schema.get("$defs", {})
    keys: set[str] = set()

    def walk(node: dict[str, Any], path: str, seen: frozenset[tuple[str, str]]) -> None:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if (name, path) not in seen:
                walk(defs[name], path, seen | {(name, path)})
        for combo in ("anyOf", "oneOf", "allOf"):
            for sub in node.get(combo, []):
                walk(sub, path, seen)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]", seen)
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}.*", seen)
        for name, sub in node.get("properties", {}).items():
            key = f"{path}.{name}" if path else name
            keys.add(key)
            walk(sub, key, seen)

    walk(schema, "", frozenset())
    return keys


# ---------------------------------------------------------------- recipes


def recipe_keys() -> set[str]:
    from assemblage.recipes.models import Recipe

    return schema_keys(Recipe.model_json_schema())


def test_recipe_schema_walk_sees_nested_keys():
    keys = recipe_keys()
    # the walk reaches every level: sources by kind, a debian selector, the github query, the matrix
    for key in (
        "name",
        "sources[].git",
        "sources[].submodules",
        "sources[].subdir",
        "sources[].debian.section",
        "sources[].github.query",
        "matrix.opt",
        "exclude[].arch",
        "build.timeout",
        "outputs.objects",
    ):
        assert key in keys, key


def test_every_recipe_key_is_in_docs_recipes():
    spans = _spans(_read("recipes.md"))
    missing = sorted(k for k in recipe_keys() if k not in spans)
    assert not missing, "docs/recipes.md does not document these recipe keys (name each as `KEY`): " + ", ".join(
        f"`{k}`" for k in missing
    )


def test_docs_recipes_names_no_key_the_recipe_lacks():
    keys = recipe_keys()
    looks_like_key = re.compile(r"^(sources\[\]|matrix|build|outputs|exclude\[\])\.[a-z_]+(\.[a-z_]+)*$")
    stale = sorted(s for s in _spans(_read("recipes.md")) if looks_like_key.match(s) and s not in keys)
    assert not stale, f"docs/recipes.md names keys the recipe format does not have: {stale}"


def test_every_source_kind_has_its_section():
    from assemblage.recipes.models import SOURCE_KINDS

    text = _read("recipes.md")
    for kind in SOURCE_KINDS:
        assert re.search(rf"^#+ .*`{kind}`", text, re.M), f"docs/recipes.md: no heading for the source kind `{kind}`"


def test_recipe_docs_list_every_toolchain_and_opt_level():
    from assemblage.recipes.models import ARCHS, OPTS, PLATFORMS
    from assemblage.toolchains.registry import TOOLCHAINS

    spans = _spans(_read("recipes.md"))
    missing = [v for v in (*TOOLCHAINS, *OPTS, *ARCHS, *PLATFORMS) if v not in spans]
    assert not missing, f"docs/recipes.md does not name these matrix values (as `VALUE`): {missing}"


# ---------------------------------------------------------------- dataset


def dataset_metadata():
    import assemblage.db.auth  # noqa: F401 - the tokens table lives on the same Base (as in migrations/env.py)
    from assemblage.db.models import Base

    return Base.metadata


def test_every_table_and_column_is_in_docs_dataset():
    sections = _sections(_read("dataset.md"))
    problems = []
    for table in dataset_metadata().sorted_tables:
        if table.name not in sections:
            problems.append(f"table `{table.name}` has no section (a heading ### `{table.name}`)")
            continue
        spans = _spans(sections[table.name])
        problems += [
            f"column `{table.name}.{c.name}` is not named in the section of `{table.name}`"
            for c in table.columns
            if c.name not in spans
        ]
    assert not problems, "docs/dataset.md: " + "; ".join(problems)


def test_docs_dataset_has_no_table_the_models_lack():
    tables = {t.name for t in dataset_metadata().sorted_tables}
    text = _read("dataset.md")
    headed = re.findall(r"^#{2,4} `([a-z_]+)`(.*)$", text, re.M)
    stale = [name for name, rest in headed if name not in tables and "exports only" not in rest]
    assert not stale, f"docs/dataset.md has sections for tables the models do not define: {stale}"


def test_dataset_docs_name_the_published_schema_columns():
    """The published Assemblage tables (tests/fixtures/published_schema) are named as such in docs/dataset.md."""
    import ast

    tree = ast.parse((ROOT / "tests/fixtures/published_schema/read_corpus.py").read_text(encoding="utf-8"))
    published: dict[str, list[str]] = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        table = next(
            n.value.value
            for n in cls.body
            if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "__tablename__"
        )
        published[table] = [
            n.targets[0].id
            for n in cls.body
            if isinstance(n, ast.Assign)
            and isinstance(n.value, ast.Call)
            and getattr(n.value.func, "id", "") == "Column"
        ]
    assert set(published) == {"binaries", "functions", "rvas", "lines", "pdbs"}
    section = _section_named(_read("dataset.md"), "What differs from the published Assemblage schema")
    missing = [t for t in published if f"`{t}`" not in section]
    assert not missing, f"docs/dataset.md, 'What differs from the published Assemblage schema': no word on {missing}"


# ---------------------------------------------------------------- settings


def _default_words(default: Any) -> list[str]:
    from pydantic import SecretStr

    if default is None:
        return ["unset"]
    if isinstance(default, SecretStr):
        return ["development"]
    if isinstance(default, bool):
        return [str(default).lower()]
    if isinstance(default, float) and default.is_integer():
        return [str(int(default)), str(default)]
    if isinstance(default, (tuple, list, dict)) and not default:
        return ["none", "empty", "unset"]
    return [str(default)]


def settings_rows(text: str) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        if line.startswith("|"):
            for span in _spans(line):
                rows.setdefault(span, line)
    return rows


def test_every_setting_is_in_docs_settings_with_variable_key_and_default():
    from pydantic_core import PydanticUndefined

    from assemblage.settings import Settings

    text = _read("settings.md")
    rows = settings_rows(text)
    problems = []
    for name, field in Settings.model_fields.items():
        if name == "fleet":
            continue
        var = f"ASSEMBLAGE_{name.upper()}"
        row = rows.get(var)
        if row is None:
            problems.append(f"`{var}` has no table row")
            continue
        if f"`{name}`" not in row:
            problems.append(f"the row of `{var}` lacks its TOML key `{name}`")
        default = field.default_factory() if field.default_factory else field.default
        if default is not PydanticUndefined:
            words = _default_words(default)
            if not any(w in row for w in words):
                problems.append(f"the row of `{var}` lacks its default ({' or '.join(words)})")
    assert not problems, "docs/settings.md: " + "; ".join(problems)


def test_every_settings_file_key_is_in_docs_settings():
    from assemblage.settings import Settings

    spans = _spans(_read("settings.md"))
    keys = schema_keys(Settings.model_json_schema())
    missing = sorted(k for k in keys if k not in spans)
    assert not missing, "docs/settings.md does not name these settings keys (as `KEY`): " + ", ".join(
        f"`{k}`" for k in missing
    )


def test_every_environment_variable_the_code_reads_is_documented():
    """ASSEMBLAGE_* names in the package's source (read with os.environ, set for builds) appear in docs/settings.md."""
    names: dict[str, str] = {}
    for path in sorted((ROOT / "assemblage").rglob("*.py")):
        for name in re.findall(r"ASSEMBLAGE_[A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8")):
            names.setdefault(name, str(path.relative_to(ROOT)))
    assert "ASSEMBLAGE_SETTINGS_FILE" in names
    spans = _spans(_read("settings.md"))
    missing = sorted(f"`{n}` (used in {p})" for n, p in names.items() if n not in spans)
    assert not missing, "docs/settings.md does not document: " + ", ".join(missing)


# ---------------------------------------------------------------- command line


def cli_commands() -> dict[str, Any]:
    """Every command of the Typer app as its click layer sees it: 'assemblage recipe check' -> the command.

    Duck-typed (``commands``, ``params``, ``param_type_name``): typer ships its own copy of click, whose
    classes are not the ``click`` package's.
    """
    import typer

    from assemblage.cli.main import app

    out: dict[str, Any] = {}

    def walk(cmd: Any, path: str) -> None:
        out[path] = cmd
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            if not sub.hidden:
                walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "assemblage")
    return out


def _param_words(param: Any) -> list[str]:
    """How the docs name a parameter: an argument by its metavar (RECIPE), an option by its long names."""
    if param.param_type_name == "argument":
        return [(param.metavar or param.name).upper()]
    if param.hidden:
        return []
    longs = [o for o in (*param.opts, *param.secondary_opts) if o.startswith("--") and o != "--help"]
    return longs or [o for o in param.opts if o != "-h"]


def test_cli_walk_sees_subcommands():
    commands = cli_commands()
    for path in (
        "assemblage build",
        "assemblage recipe check",
        "assemblage recipe schema",
        "assemblage token create",
        "assemblage fleet user-data",
        "assemblage db upgrade",
    ):
        assert path in commands, path


def test_every_command_option_and_argument_is_in_docs_cli():
    text = _read("cli.md")
    sections = _sections(text)
    problems = []
    for path, cmd in cli_commands().items():
        if path not in sections:
            problems.append(f"command `{path}` has no section (a heading ### `{path}`)")
            continue
        spans = _spans(sections[path])
        for param in cmd.params:
            problems += [f"`{path}` lacks `{w}`" for w in _param_words(param) if w not in spans]
        if any("--json" in p.opts for p in cmd.params) and "```json" not in sections[path]:
            problems.append(f"`{path}` has --json but no ```json example of its output")
    assert not problems, "docs/cli.md: " + "; ".join(problems)


def test_docs_cli_has_no_command_the_app_lacks():
    commands = cli_commands()
    stale = [p for p in _sections(_read("cli.md")) if p.startswith("assemblage") and p not in commands]
    assert not stale, f"docs/cli.md has sections for commands the CLI does not have: {stale}"


@functools.cache
def error_classes() -> list[type]:
    """Every subclass of AssemblageError the package defines, wherever (each module imported, as a worker would)."""
    import importlib
    import pkgutil

    import assemblage
    import assemblage.errors as errors

    for info in pkgutil.walk_packages(assemblage.__path__, "assemblage."):
        if info.name.endswith("__main__") or info.name.startswith("assemblage.migrations"):
            continue  # the console entry point runs the CLI; Alembic's env.py runs migrations
        importlib.import_module(info.name)
    found, todo = [], [errors.AssemblageError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted((c for c in found if c.__module__.startswith("assemblage")), key=lambda c: c.__name__)


def _own_exit_code(cls: type) -> bool:
    return "exit_code" in cls.__dict__


def test_every_error_class_is_in_the_errors_tree():
    """A class with an exit code of its own lives in errors.py, in its tree (docstring) and __all__; so do the others
    errors.py defines. Subclasses elsewhere (a GitHub rate limit is a SourceError) inherit their family's code."""
    import assemblage.errors as errors

    tree = errors.__doc__ or ""
    problems = []
    for cls in error_classes():
        if _own_exit_code(cls) and cls.__module__ != errors.__name__:
            problems.append(
                f"{cls.__module__}.{cls.__name__} sets its own exit code: define it in assemblage/errors.py"
            )
        if cls.__module__ == errors.__name__ and (cls.__name__ not in tree or cls.__name__ not in errors.__all__):
            problems.append(f"{cls.__name__} is missing from the tree (docstring) or __all__ of assemblage/errors.py")
    assert not problems, "; ".join(problems)


def test_every_exit_code_is_in_docs_cli_and_in_help():
    from assemblage.cli.main import EXIT_CODES_HELP, EXIT_PARTIAL

    section = _section_named(_read("cli.md"), "Exit codes")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| *(\d+) *\|.*$", section, re.M)}
    problems = []
    codes = {0, 2, EXIT_PARTIAL, 130}
    for cls in error_classes():
        codes.add(cls.exit_code)
        if _own_exit_code(cls) or cls.__module__ == "assemblage.errors":
            row = rows.get(str(cls.exit_code))
            if row is None or f"`{cls.__name__}`" not in row:
                problems.append(f"exit code {cls.exit_code}'s row lacks `{cls.__name__}`")
    problems += [f"exit code {c} has no row" for c in sorted(codes) if str(c) not in rows]
    help_text = " ".join(EXIT_CODES_HELP.split())
    problems += [
        f"exit code {c} is not in `assemblage --help`"
        for c in sorted(codes)
        if not re.search(rf"(^|[ ;:]){c} ", help_text)
    ]
    assert not problems, "docs/cli.md, Exit codes: " + "; ".join(problems)


# ---------------------------------------------------------------- links


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _anchors(text: str) -> set[str]:
    """GitHub's heading slugs, and explicit <a id="..."> anchors."""
    out = set(re.findall(r'<a (?:id|name)="([^"]+)"', text))
    for heading in re.findall(r"^#{1,6} (.*)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


@pytest.mark.parametrize("md", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_point_at_files_in_the_repo(md: Path):
    text = md.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # links inside code blocks are not links
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (md.parent / path_part).resolve() if path_part else md
        if not dest.is_relative_to(ROOT):
            problems.append(f"{target}: outside the repository")
        elif not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text(encoding="utf-8")):
            problems.append(f"{target}: no heading or anchor #{anchor} in {dest.relative_to(ROOT)}")
    assert not problems, f"{md.relative_to(ROOT)}: " + "; ".join(problems)


@pytest.mark.parametrize("md", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_repository_paths_named_in_docs_exist(md: Path):
    """A path in backticks that starts at a folder of the repository (`recipes/demo.yaml`) names a real file."""
    tops = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")} - {"build", "out"}
    problems = []
    for span in _spans(md.read_text(encoding="utf-8")):
        first = span.split("/", 1)[0]
        if "/" not in span or first not in tops or " " in span or re.search(r"[<>*{}…$]|\.\.\.|NNN", span):
            continue
        if not (ROOT / span.split("#")[0].split("::")[0]).exists():
            problems.append(span)
    assert not problems, f"{md.relative_to(ROOT)} names paths that are not in the repository: {problems}"


def test_no_reference_to_a_design_document_outside_the_repository():
    word = "DESIGN"  # the project's reference is docs/; a document that is not in the repository is no reference
    hits = []
    for path in [
        *markdown_files(),
        *sorted((ROOT / "assemblage").rglob("*.py")),
        *sorted((ROOT / "tests").rglob("*.py")),
    ]:
        if path == Path(__file__).resolve():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(rf"\b{word}(\.md|'s|:|\b)", line):
                hits.append(f"{path.relative_to(ROOT)}:{n}")
    assert not hits, f"references to a {word} document that is not in the repository: {hits}"


def test_docs_name_no_environment_variable_that_nothing_reads():
    """An ASSEMBLAGE_* name in README.md or docs/ is read by the package, a script, the compose files or the tests."""
    known: set[str] = set()
    files = [
        *(ROOT / "assemblage").rglob("*.py"),
        *(ROOT / "scripts").rglob("*"),
        *ROOT.glob("docker-compose*.yml"),
        *(ROOT / "workers").rglob("*"),
        ROOT / "Makefile",
        ROOT / "tests" / "conftest.py",
    ]
    for path in files:
        if path.is_file():
            known.update(
                re.findall(r"ASSEMBLAGE_[A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8", errors="replace"))
            )
    from assemblage.settings import Settings

    known.update(f"ASSEMBLAGE_{name.upper()}" for name in Settings.model_fields)
    problems = []
    for md in markdown_files():
        for name in sorted(set(re.findall(r"ASSEMBLAGE_[A-Z0-9_]*[A-Z0-9]", md.read_text(encoding="utf-8")))):
            if name not in known:
                problems.append(f"{md.relative_to(ROOT)}: {name}")
    assert not problems, f"documented environment variables that nothing reads: {problems}"


def test_readme_links_every_document_of_docs():
    """README.md is the front door: every document of docs/ is reachable from it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = {(ROOT / t.split("#")[0]).resolve() for t in re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", readme)}
    missing = [f"docs/{p.name}" for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not missing, f"README.md does not link {missing}"


# ---------------------------------------------------------------- --json shapes


def doc_json(command: str) -> Any:
    """The first ```json example of a command's section in docs/cli.md, parsed."""
    import json

    body = _sections(_read("cli.md"))[command]
    m = re.search(r"^```json\n(.*?)^```", body, re.M | re.S)
    assert m, f"docs/cli.md: `{command}` has no ```json example"
    return json.loads(m.group(1))


def same_keys(where: str, documented: dict, real: dict) -> list[str]:
    """Keys the docs show that the code does not make, and (unless the docs abbreviate with "...") the reverse."""
    shown = set(documented) - {"..."}
    problems = [f"{where}: documents `{k}`, which the output lacks" for k in sorted(shown - set(real))]
    if "..." not in documented:
        problems += [f"{where}: lacks `{k}`" for k in sorted(set(real) - shown)]
    return problems


def test_json_shapes_in_docs_cli_are_the_code_s():
    """The documented --json objects have the keys the code writes (objects made by the code's own types)."""
    from collections import Counter
    from dataclasses import asdict, fields

    from assemblage.binaries.model import BinaryAnalysis, Disagreement, Function, Inlining, LineRow, Producer, Range
    from assemblage.cli.progress import report_json
    from assemblage.corpus.request import ExportSummary
    from assemblage.fleet.cost import FamilyCost, RunCost
    from assemblage.fleet.reconcile import Decision
    from assemblage.pipeline.rebuild import Drift
    from assemblage.pipeline.report import Cell, RunReport
    from assemblage.pipeline.verify import Difference, VerifyReport

    problems: list[str] = []

    report = RunReport(
        run_id=1,
        recipe="r",
        status="finished",
        notes=[],
        by_status=Counter(succeeded=1),
        cells=[
            Cell(
                build_id=1,
                source="s",
                config="c",
                status="succeeded",
                reason=None,
                message=None,
                binaries=1,
                reused=False,
            )
        ],
    )
    real = report_json(report, Path("out/dataset.sqlite"), 1.0)
    doc = doc_json("assemblage build")
    problems += same_keys("assemblage build --json", doc, real)
    problems += same_keys("assemblage build --json, cells[]", doc["cells"][0], real["cells"][0])
    problems += same_keys("assemblage report --json", doc_json("assemblage report"), real)

    fn = Function(name="f", start=1, end=2, size=1, ranges=[Range(1, 2)], lines=[LineRow(1, 1, "a.c", 3)])
    analysis = BinaryAnalysis(
        path="p",
        sha256="s",
        size=1,
        format="elf",
        arch="x86_64",
        bits=64,
        functions=[fn],
        producers=[Producer(raw="GNU C17", compiler="gcc", version="12")],
        inlinings=[Inlining(callee="g", caller="f", ranges=(Range(1, 2),))],
        disagreements=[Disagreement(kind="k", address=1, detail="d")],
    )
    real = analysis.to_json(lines=True)
    doc = doc_json("assemblage analyze")
    problems += same_keys("assemblage analyze --json", doc, real)
    for key in ("functions", "producers", "inlinings", "disagreements"):
        problems += same_keys(f"assemblage analyze --json, {key}[]", doc[key][0], real[key][0])
    problems += same_keys(
        "assemblage analyze --json, functions[].lines[]",
        doc["functions"][0]["lines"][0],
        real["functions"][0]["lines"][0],
    )

    diff = Difference(
        source="s", config="c", relpath="r", kind="binary", status="differs", original="a", rebuilt="b", build_id=1
    )
    verify = VerifyReport(
        verification_id=1,
        run_id=1,
        sample=None,
        seed=0,
        builds=1,
        compared=1,
        identical=0,
        differences=[diff],
        drift=[Drift(what="w", locked="a", here="b")],
    )
    real = verify.to_dict()
    doc = doc_json("assemblage verify")
    problems += same_keys("assemblage verify --json", doc, real)
    problems += same_keys("assemblage verify --json, differences[]", doc["differences"][0], real["differences"][0])
    problems += same_keys("assemblage verify --json, drift[]", doc["drift"][0], real["drift"][0])

    problems += same_keys(
        "assemblage export --json", doc_json("assemblage export"), dict.fromkeys(ExportSummary.model_fields)
    )

    doc = doc_json("assemblage fleet cost")
    problems += same_keys("assemblage fleet cost --json", doc, {f.name: 0 for f in fields(RunCost)})
    problems += same_keys(
        "assemblage fleet cost --json, families[]", doc["families"][0], {f.name: 0 for f in fields(FamilyCost)}
    )
    problems += same_keys(
        "assemblage fleet reconcile --json",
        doc_json("assemblage fleet reconcile")[0],
        asdict(Decision(family="linux", group="g", current=0, desired=0, demand=0, reason="")),
    )
    assert not problems, "docs/cli.md: " + "; ".join(problems)


def test_recipe_check_json_shape_in_docs_cli_is_the_command_s():
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "assemblage.cli", "recipe", "check", str(ROOT / "recipes/demo.yaml"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    problems = same_keys("assemblage recipe check --json", doc_json("assemblage recipe check"), json.loads(out.stdout))
    assert not problems, "docs/cli.md: " + "; ".join(problems)


def test_every_yaml_example_of_docs_recipes_validates(tmp_path: Path):
    """The examples are real recipes: each one passes the loader (a fragment, inside a minimal recipe)."""
    from assemblage.errors import RecipeError
    from assemblage.recipes.load import load_recipe

    (tmp_path / "samples").symlink_to(ROOT / "recipes" / "samples")
    blocks = re.findall(r"^```yaml\n(.*?)^```", _read("recipes.md"), re.M | re.S)
    assert len(blocks) >= 4
    problems = []
    for n, block in enumerate(blocks, 1):
        if not re.search(r"^name:", block, re.M):
            block = "name: fragment\nsources: [{path: samples/calc}]\nmatrix: {toolchain: [gcc-12]}\n" + block
        path = tmp_path / f"example-{n}.yaml"
        path.write_text(block, encoding="utf-8")
        try:
            load_recipe(path)
        except RecipeError as exc:
            problems.append(f"example {n}: {exc}")
    assert not problems, "docs/recipes.md: " + "; ".join(problems)


@pytest.mark.parametrize("name", ["settings.md", "operations.md"])
def test_every_toml_example_of_the_docs_is_valid_settings(name: str, tmp_path: Path, monkeypatch):
    import os

    from assemblage.settings import load_settings

    for key in list(os.environ):
        if key.startswith("ASSEMBLAGE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ASSEMBLAGE_SECRET_KEY", "a-long-random-secret-for-the-example")  # never in a file
    blocks = re.findall(r"^```toml\n(.*?)^```", _read(name), re.M | re.S)
    assert blocks, f"docs/{name} has no TOML example"
    for n, block in enumerate(blocks, 1):
        path = tmp_path / f"example-{n}.toml"
        path.write_text(block, encoding="utf-8")
        load_settings(path)  # raises SettingsError naming the bad key
