"""Load a recipe from YAML, JSON or a dict; every problem comes back with its location.

Recipes arrive from anyone with a submit token, so parsing is bounded before any
of it can cost much. Measured on the attack that prompted this: a 1 MiB YAML
recipe of nested anchors and aliases expanded to 26.4 million builds, and 2 KB of
``[[[[`` made PyYAML's composer (which recurses once per level) raise
``RecursionError`` (a 500 from the API, a traceback from ``recipe check``). Now:

- YAML is first read as a stream of parser events (:func:`_check_events`), which
  refuses nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_ALIASES`
  aliases, an alias that contains itself, and a document that would have more than
  :data:`MAX_NODES` values with every alias expanded (counted without expanding:
  an alias adds the size its anchor had). Only then is it loaded. Each refusal is
  a located problem (line and column). libyaml's parser does both passes when it
  is installed (PyYAML's wheels have it): a 1 MiB recipe of 30,000 sources loaded
  in 2.8 s with it against 11.1 s with PyYAML's pure-Python loader (on a busy
  2-core machine, load average 9); its event pass alone took 0.8 s.
- JSON is refused past the same depth (``json`` raises ``RecursionError`` near
  1000 levels; below that, the depth is checked on the parsed value).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.composer import ComposerError
from yaml.scanner import ScannerError

from assemblage.errors import Problem, RecipeError
from assemblage.recipes.models import SOURCE_KINDS, ArchiveSource, PathSource, Recipe

__all__ = ["load_recipe", "parse_recipe", "parse_recipe_json", "parse_recipe_text", "check_recipe_paths",
           "format_location", "MAX_DEPTH", "MAX_ALIASES", "MAX_NODES"]

MAX_DEPTH = 32  # a recipe is five levels deep; lists of lists are not part of the format
MAX_ALIASES = 500
MAX_NODES = 200_000  # the expanded document: ~50k sources written out one by one


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
    too_deep = _too_deep(data)
    if too_deep is not None:
        raise RecipeError([Problem(too_deep, f"nested deeper than {MAX_DEPTH} levels")], file=file)
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(_problems_from(exc), file=file) from None


def _too_deep(data: Any) -> str | None:
    """Where ``data`` first goes deeper than :data:`MAX_DEPTH` (a location), or None. Iterative."""
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(data, 0, ())]
    while stack:
        value, depth, loc = stack.pop()
        if depth > MAX_DEPTH:
            return format_location(loc[:4]) + ("..." if len(loc) > 4 else "")
        if isinstance(value, dict):
            stack.extend((v, depth + 1, (*loc, str(k))) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, depth + 1, (*loc, i)) for i, v in enumerate(value))
    return None


class _PyLoader(yaml.SafeLoader):
    """PyYAML's own safe loader (when libyaml is missing), with flow nesting bounded while scanning.

    Its scanner keeps a possible simple key per flow level and re-checks them all on
    every token: quadratic in the nesting (2 KB of ``[`` took 0.5 s).
    """

    def fetch_flow_collection_start(self, token_class):  # PyYAML's signature
        if self.flow_level >= MAX_DEPTH:
            raise ScannerError(None, None, f"nested deeper than {MAX_DEPTH} levels", self.get_mark())
        super().fetch_flow_collection_start(token_class)


_Loader = getattr(yaml, "CSafeLoader", None) or _PyLoader


def _check_events(text: str) -> None:
    """One pass over the parser's events: depth, alias count and expanded size, before anything is built.

    Each open collection counts the values it holds, an alias adding the size its
    anchor had when it closed, so the expanded size is known without expanding.
    An alias to an anchor still open contains itself.
    """
    loader = _Loader(text)
    stack: list[list] = []  # [values so far, anchor]
    sizes: dict[str, int] = {}
    aliases = 0

    def add(n: int, mark: Any) -> None:  # any yaml mark (see below)
        if stack:
            stack[-1][0] += n
            if stack[-1][0] > MAX_NODES:
                raise ComposerError(None, None, f"aliases expand the recipe past {MAX_NODES} values", mark)

    # with libyaml's loader the events' marks are yaml._yaml.Mark, which types-PyYAML's MarkedYAMLError does not
    # list (it takes any mark with line, column and name): hence the ignores on ComposerError(..., event.start_mark)
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise ComposerError(None, None, f"more than {MAX_ALIASES} aliases", event.start_mark)  # type: ignore[arg-type]
                if any(frame[1] == event.anchor for frame in stack):
                    raise ComposerError(None, None, "an alias that contains itself", event.start_mark)  # type: ignore[arg-type]
                add(sizes.get(event.anchor, 1) if event.anchor is not None else 1, event.start_mark)
            elif isinstance(event, yaml.ScalarEvent):
                if event.anchor:
                    sizes[event.anchor] = 1
                add(1, event.start_mark)
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                if len(stack) >= MAX_DEPTH:
                    raise ComposerError(
                        None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark  # type: ignore[arg-type]
                    )
                stack.append([1, event.anchor])
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                size, anchor = stack.pop()
                if anchor:
                    sizes[anchor] = size
                add(size, event.start_mark)
    finally:
        loader.dispose()


def _load_yaml(text: str) -> Any:
    _check_events(text)
    return yaml.load(text, Loader=_Loader)  # _Loader is a safe loader (libyaml's, or PyYAML's own)


def parse_recipe_text(text: str, *, file: str | None = None) -> Recipe:
    """A recipe from YAML text (JSON is YAML too, but see :func:`parse_recipe_json`)."""
    try:
        data = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError([Problem(where, f"not valid YAML: {problem}")], file=file) from None
    return parse_recipe(data, file=file)


def parse_recipe_json(text: str, *, file: str | None = None) -> Recipe:
    """A recipe from JSON text."""
    import json

    try:
        data = json.loads(text)
    except RecursionError:
        raise RecipeError([Problem("", f"not valid JSON: nested deeper than {MAX_DEPTH} levels")], file=file) from None
    except ValueError as exc:
        raise RecipeError([Problem("", f"not valid JSON: {exc}")], file=file) from None
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
