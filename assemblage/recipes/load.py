"""Load a recipe from YAML or a dict; every problem comes back with its location."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from assemblage.errors import Problem, RecipeError
from assemblage.recipes.models import SOURCE_KINDS, ArchiveSource, PathSource, Recipe

__all__ = ["load_recipe", "parse_recipe", "check_recipe_paths", "format_location"]


def format_location(loc: tuple[Any, ...]) -> str:
    """``('sources', 1, 'git', 'ref')`` -> ``sources[1].ref`` (the union tag is dropped)."""
    out = ""
    items = list(loc)
    i = 0
    while i < len(items):
        part = items[i]
        if isinstance(part, int):
            out += f"[{part}]"
            # a source's union tag follows its index: sources[1].<tag>.<field>
            if i >= 1 and items[i - 1] == "sources" and i + 1 < len(items) and items[i + 1] in SOURCE_KINDS:
                i += 1
        else:
            out += f".{part}" if out else str(part)
        i += 1
    return out


def _problems_from(exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        problems.append(Problem(format_location(err["loc"]), msg))
    return problems


def parse_recipe(data: Any, *, file: str | None = None) -> Recipe:
    """Validate a parsed document (dict) into a :class:`Recipe` or raise :class:`RecipeError`."""
    if not isinstance(data, dict):
        raise RecipeError([Problem("", "a recipe is a mapping (name, sources, matrix, ...)")], file=file)
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(_problems_from(exc), file=file) from None


def parse_recipe_text(text: str, *, file: str | None = None) -> Recipe:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError([Problem(where, f"not valid YAML: {problem}")], file=file) from None
    return parse_recipe(data, file=file)


def load_recipe(path: str | Path) -> tuple[Recipe, Path]:
    """Read and validate a recipe file. Returns the recipe and the folder relative paths start from."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError([Problem("", "no such file")], file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError([Problem("", f"cannot read: {exc}")], file=str(path)) from None
    recipe = parse_recipe_text(text, file=str(path))
    base = path.resolve().parent
    problems = check_recipe_paths(recipe, base)
    if problems:
        raise RecipeError(problems, file=str(path))
    return recipe, base


def resolve_local(ref: str, base: Path) -> Path:
    """A relative path in a recipe: the recipe's folder first, then the working directory."""
    p = Path(ref).expanduser()
    if p.is_absolute():
        return p
    for root in (base, Path.cwd()):
        candidate = (root / p).resolve()
        if candidate.exists():
            return candidate
    return (base / p).resolve()


def check_recipe_paths(recipe: Recipe, base: Path) -> list[Problem]:
    """Local paths named by the recipe must exist (URLs are checked when fetched)."""
    problems = []
    for i, src in enumerate(recipe.sources):
        if isinstance(src, PathSource):
            p = resolve_local(src.path, base)
            if not p.is_dir():
                problems.append(Problem(f"sources[{i}].path", f"no such folder: {src.path}"))
        elif isinstance(src, ArchiveSource) and "://" not in src.archive:
            p = resolve_local(src.archive, base)
            if not p.is_file():
                problems.append(Problem(f"sources[{i}].archive", f"no such file: {src.archive}"))
    return problems
