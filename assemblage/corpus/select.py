"""One typed selection of binaries, shared by ``assemblage select``, ``assemblage export --where``,
the export job and ``GET /api/v1/binaries``.

A :class:`Selection` is a frozen pydantic model that forbids unknown keys, so an
unknown filter is an error wherever it is given (the CLI exits 2 naming it, the
API answers 422), never silently ignored. Every list filter accepts repeated
values or one comma-separated value (``opt=O2,O3`` is ``opt=O2&opt=O3``); the
values of one filter are OR-ed, different filters are AND-ed.

Filters and what they match (all on ``binaries`` unless said):

==================  ==========================================================
platform, arch      ``platform``, ``arch`` (``linux``, ``x86_64``)
toolchain           the toolchain name (``gcc-12``, ``clang-19``, ``mingw-gcc-12``)
compiler, version   the two halves of a toolchain name: ``gcc`` / ``12``,
                    ``mingw-gcc`` / ``12``, ``msvc`` / ``v143``
opt                 the optimisation level the configuration names (``O2``)
config              the configuration identifier (``linux-x86_64-gcc-12-O2``)
format              ``elf`` or ``pe``
kind                ``executable`` (``exe``), ``shared`` (``so``, ``dll``),
                    ``static``, ``object``
license             an SPDX allow-list: a binary passes when its licence
                    expression is satisfied by the listed identifiers
                    (``MIT OR GPL-2.0`` passes ``license=MIT``; ``MIT AND
                    Zlib`` needs both; case-insensitive; ``-only`` ignored;
                    ``unknown`` admits binaries with no recorded licence)
source, source_kind the source as the recipe names it (a path, a URL,
                    ``debian:zlib``) or its short name (``calc``), and its kind
                    (``path``, ``git``, ``archive``, ``debian``)
run, build          run and build ids; a run's binaries include those of the
                    builds it reused from earlier runs, and a reused build's
                    are those of the build it reused
size, functions     ranges ``LO..HI`` (either end may be left out; both
                    inclusive) of the file size in bytes and the function count
has_pdb             whether a PDB was stored with the binary
opt_mismatch        label agreement: ``false`` keeps binaries whose
                    optimisation level read back from the binary matched the
                    label (or could not be read), ``true`` only mismatches
sample, seed        a sample of N binaries ...
sample_per_config   ... or N per configuration (balanced across configurations)
==================  ==========================================================

Sampling is content-addressed: every candidate gets the key
``sha256(seed, sha256 of the file, config, source, relpath)`` and the N smallest
keys win. The sample therefore depends only on the seed and the corpus's
content, not on database ids or row order, so the same recipe built on a laptop
and on the service samples the same binaries; it is computed by one streaming
pass that keeps N candidates (per configuration) in memory.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import exists, false, or_, select
from sqlalchemy.sql import ColumnElement

from assemblage.db import models as m
from assemblage.errors import Problem, SelectionError

__all__ = ["Selection", "in_runs", "license_allows", "parse_where", "pick_sample", "KINDS"]

MAX_ID = 2**63 - 1
MAX_SAMPLE = 10_000_000
# values reach SQL as bound parameters; still: printable, bounded (PostgreSQL refuses NUL in text)
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
_RANGE = re.compile(r"^(\d{0,18})\.\.(\d{0,18})$|^(\d{1,18})$")
KINDS = {
    "executable": "executable",
    "exe": "executable",
    "shared": "shared",
    "so": "shared",
    "dll": "shared",
    "static": "static",
    "object": "object",
}


def _listify(value: Any) -> Any:
    """Repeated values or one comma-separated value -> a list (None stays None)."""
    if value is None:
        return None
    if isinstance(value, (str, int, bool)):
        value = [value]
    if not isinstance(value, (list, tuple, set, frozenset)):
        return value  # pydantic says what is wrong with it
    out: list[Any] = []
    for item in value:
        if isinstance(item, str):
            out += [part.strip() for part in item.split(",") if part.strip()]
        else:
            out.append(item)
    return out or None


def _kinds(value: Any) -> Any:
    value = _listify(value)
    if isinstance(value, list):
        return [KINDS.get(v.lower(), v) if isinstance(v, str) else v for v in value]
    return value


Text = Annotated[str, Field(min_length=1, max_length=1000, pattern=_PRINTABLE)]
Values = Annotated[Annotated[list[Text], Field(max_length=500)] | None, BeforeValidator(_listify)]
Ids = Annotated[
    Annotated[list[Annotated[int, Field(ge=1, le=MAX_ID)]], Field(max_length=10_000)] | None, BeforeValidator(_listify)
]
Range = Annotated[
    str | None,
    Field(
        pattern=r"^\d{0,18}\.\.\d{0,18}$|^\d{1,18}$",
        description="LO..HI, either end optional, both inclusive (e.g. 1000..50000)",
    ),
]


class Selection(BaseModel):
    """Which binaries: every filter optional; unknown filters are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    platform: Values = None
    arch: Values = None
    toolchain: Values = None
    compiler: Values = Field(None, description="toolchain name without its version: gcc, clang, mingw-gcc, msvc")
    version: Values = Field(None, description="toolchain version: 12, 19, v143")
    opt: Values = None
    config: Values = None
    format: Annotated[list[Literal["elf", "pe"]] | None, BeforeValidator(_listify)] = None
    kind: Annotated[list[Literal["executable", "shared", "static", "object"]] | None, BeforeValidator(_kinds)] = None
    license: Values = Field(None, description="SPDX allow-list; 'unknown' admits binaries with no licence")
    source: Values = None
    source_kind: Values = None
    run: Ids = None
    build: Ids = None
    size: Range = None
    functions: Range = None
    has_pdb: bool | None = None
    opt_mismatch: bool | None = None
    sample: int | None = Field(None, ge=1, le=MAX_SAMPLE, description="a sample of N binaries (see seed)")
    sample_per_config: int | None = Field(
        None, ge=1, le=MAX_SAMPLE, description="N binaries per configuration (balanced sampling)"
    )
    seed: int = Field(0, ge=0, le=MAX_ID)

    @model_validator(mode="after")
    def _coherent(self) -> Selection:
        for name in ("size", "functions"):
            lo, hi = self.bounds(name)
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"{name}: the range {getattr(self, name)} is empty ({lo} > {hi})")
        if self.sample is not None and self.sample_per_config is not None:
            raise ValueError("give sample or sample_per_config, not both")
        return self

    # ------------------------------------------------------------ reading

    def bounds(self, name: str) -> tuple[int | None, int | None]:
        """The (low, high) ends of a range filter, None where open."""
        text = getattr(self, name)
        if text is None:
            return None, None
        match = _RANGE.match(text)
        if match is None:  # the field pattern makes this unreachable
            raise ValueError(f"{name}: not a range: {text!r}")
        if match.group(3) is not None:
            n = int(match.group(3))
            return n, n
        lo, hi = match.group(1), match.group(2)
        return (int(lo) if lo else None), (int(hi) if hi else None)

    @property
    def sampled(self) -> bool:
        return self.sample is not None or self.sample_per_config is not None

    def filters(self) -> dict[str, Any]:
        """The filters given (for reports): name -> value, sampling included."""
        return self.model_dump(exclude_defaults=True, mode="json")

    # ------------------------------------------------------------ SQL

    def conditions(self, bind: Any) -> list[ColumnElement[bool]]:
        """WHERE conditions on ``binaries`` (``m.Binary``). ``bind`` (a Session or Connection) resolves the
        licence, compiler and version filters against the few distinct values the corpus holds."""
        b = m.Binary
        conds: list[ColumnElement[bool]] = []
        for column, values in (
            (b.platform, self.platform),
            (b.arch, self.arch),
            (b.toolchain, self.toolchain),
            (b.optimization, self.opt),
            (b.config, self.config),
            (b.format, self.format),
            (b.kind, self.kind),
            (b.source_kind, self.source_kind),
        ):
            if values:
                conds.append(column.in_(sorted(set(values))))
        if self.source:
            conds.append(_source_matches(sorted(set(self.source))))
        if self.run:
            conds.append(in_runs(sorted(set(self.run))))
        if self.build:
            conds.append(_of_builds(sorted(set(self.build))))
        if self.compiler or self.version:
            names = [t for t in _distinct(bind, b.toolchain) if _toolchain_matches(t, self.compiler, self.version)]
            conds.append(b.toolchain.in_(names) if names else false())
        if self.license:
            allowed = {_spdx(x) for x in self.license}
            texts = [t for t in _distinct(bind, b.license) if license_allows(t, allowed)]
            admit = [b.license.in_(texts)] if texts else []
            if "unknown" in allowed:
                admit.append(b.license.is_(None))
            conds.append(or_(*admit) if admit else false())
        for counted, name in ((b.size, "size"), (b.function_count, "functions")):
            lo, hi = self.bounds(name)
            if lo is not None:
                conds.append(counted >= lo)
            if hi is not None:
                conds.append(counted <= hi)
        if self.has_pdb is not None:
            has = exists(select(m.Pdb.id).where(m.Pdb.binary_id == b.id))
            conds.append(has if self.has_pdb else ~has)
        if self.opt_mismatch is not None:
            conds.append(b.opt_mismatch.is_(True) if self.opt_mismatch else b.opt_mismatch.is_not(True))
        return conds

    def sample_ids(self, bind: Any, conditions: list[ColumnElement[bool]] | None = None) -> list[int] | None:
        """The sampled binary ids (sorted), or None when the selection does not sample."""
        if not self.sampled:
            return None
        b = m.Binary
        conds = self.conditions(bind) if conditions is None else conditions
        q = select(b.id, b.hash, b.config, b.source, b.relpath).where(*conds)
        rows = bind.execute(q.execution_options(yield_per=10_000))
        return pick_sample(rows, n=self.sample, per_config=self.sample_per_config, seed=self.seed)


def in_runs(runs: list[int]) -> ColumnElement[bool]:
    """Binaries of these runs: made by them, or made by an earlier run for a build they reused.

    A reused build (``builds.reused_from_id``) stores no binary of its own; the binaries of the build
    that did the work belong to every run that reused it as much as to the run that made them.
    """
    reused = select(m.Build.reused_from_id).where(m.Build.run_id.in_(runs), m.Build.reused_from_id.is_not(None))
    return or_(m.Binary.run_id.in_(runs), m.Binary.build_id.in_(reused))


def _of_builds(builds: list[int]) -> ColumnElement[bool]:
    """Binaries of these builds; a reused build's are those of the build it reused."""
    reused = select(m.Build.reused_from_id).where(m.Build.id.in_(builds), m.Build.reused_from_id.is_not(None))
    return or_(m.Binary.build_id.in_(builds), m.Binary.build_id.in_(reused))


def _source_matches(values: list[str]) -> ColumnElement[bool]:
    """The source as the recipe names it (``binaries.source``: a path, URL, ``debian:zlib``) or its short
    name (``sources.name``: ``calc``, ``zlib``)."""
    named = select(m.Build.id).join(m.Source, m.Build.source_id == m.Source.id).where(m.Source.name.in_(values))
    return or_(m.Binary.source.in_(values), m.Binary.build_id.in_(named))


def _distinct(bind: Any, column) -> list[str]:
    return [v for v in bind.execute(select(column).distinct()).scalars() if v is not None]


def _toolchain_matches(name: str, compilers: list[str] | None, versions: list[str] | None) -> bool:
    family, _, version = name.rpartition("-")
    if not family:
        family, version = name, ""
    return (not compilers or family in compilers) and (not versions or version in versions)


def pick_sample(rows: Iterable[Any], *, n: int | None, per_config: int | None, seed: int) -> list[int]:
    """The ids of the ``n`` rows (or ``per_config`` rows of each configuration) with the smallest
    content keys. ``rows`` are (id, sha256, config, source, relpath); one pass, O(n) memory."""
    quota = n if n is not None else per_config
    assert quota is not None
    heaps: dict[str, list[tuple[int, int]]] = {}
    for bid, digest, config, source, relpath in rows:
        key = hashlib.sha256(f"{seed}\x00{digest}\x00{config}\x00{source}\x00{relpath}".encode()).digest()
        item = (-int.from_bytes(key[:16], "big"), -bid)  # a max-heap of the smallest keys
        heap = heaps.setdefault(config if per_config is not None else "", [])
        if len(heap) < quota:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    return sorted(-bid for heap in heaps.values() for _, bid in heap)


# ------------------------------------------------------------ licences


def _spdx(identifier: str) -> str:
    ident = identifier.strip().lower()
    return ident.removesuffix("-only")


def _tokens(expr: str) -> Iterator[str]:
    yield from re.findall(r"\(|\)|[^\s()]+", expr)


def license_allows(expression: str | None, allowed: set[str]) -> bool:
    """Whether an SPDX licence expression is satisfied by the allowed identifiers (lower-case).

    ``OR`` needs one side, ``AND`` both (it binds tighter), ``WITH exception`` is judged by its
    licence, parentheses group. An expression we cannot parse is not allowed.
    """
    if not expression:
        return "unknown" in allowed
    tokens = list(_tokens(expression))
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def atom() -> bool:
        tok = peek()
        if tok is None:
            raise ValueError("unexpected end")
        if tok == "(":
            take()
            value = disjunction()
            if peek() != ")":
                raise ValueError("unbalanced parenthesis")
            take()
            return value
        if tok.upper() in ("AND", "OR", "WITH", ")"):
            raise ValueError(f"unexpected {tok}")
        value = _spdx(take()) in allowed
        if (nxt := peek()) is not None and nxt.upper() == "WITH":
            take()
            take()  # the exception does not change which licence it is
        return value

    def conjunction() -> bool:
        value = atom()
        while (nxt := peek()) is not None and nxt.upper() == "AND":
            take()
            value = atom() and value
        return value

    def disjunction() -> bool:
        value = conjunction()
        while (nxt := peek()) is not None and nxt.upper() == "OR":
            take()
            value = conjunction() or value
        return value

    try:
        result = disjunction()
    except (ValueError, IndexError):
        return False
    return result if pos == len(tokens) else False


# ------------------------------------------------------------ the CLI's --where


_RANGE_ALIASES = {"size", "functions"}


def parse_where(items: Iterable[str], *, base: dict[str, Any] | None = None, origin: str = "--where") -> Selection:
    """``["opt=O2,O3", "size=..100000", "has_pdb=true"]`` -> a Selection; every problem named.

    A filter given twice adds values (``--where opt=O2 --where opt=O3``) for list filters and is an
    error for the others.
    """
    fields = Selection.model_fields
    data: dict[str, Any] = dict(base or {})
    problems: list[Problem] = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            problems.append(Problem(f"{origin} {item}", "expected NAME=VALUE"))
            continue
        if key not in fields:
            problems.append(Problem(f"{origin} {item}", f"unknown filter {key!r}; known: {', '.join(fields)}"))
            continue
        if key in data and key not in base_lists():
            problems.append(Problem(f"{origin} {item}", f"{key} is given twice"))
            continue
        if key in base_lists():
            data.setdefault(key, [])
            data[key] = [*data[key], value]
        else:
            data[key] = value
    if problems:
        raise SelectionError(problems)
    return validate_selection(data, origin=origin)


def base_lists() -> set[str]:
    """The list-valued filters."""
    return {
        name for name, f in Selection.model_fields.items() if name not in _RANGE_ALIASES and "list" in str(f.annotation)
    }


def validate_selection(data: dict[str, Any], *, origin: str = "where") -> Selection:
    """A Selection from a mapping, with pydantic's complaints as located problems."""
    try:
        return Selection.model_validate(data)
    except ValidationError as exc:
        raise SelectionError(
            [
                Problem(
                    f"{origin} {'.'.join(str(p) for p in e['loc'] if not isinstance(p, int))}".strip(),
                    e["msg"].removeprefix("Value error, "),
                )
                for e in exc.errors(include_url=False)
            ]
        ) from None
