"""Leak-free splits: no source, no function family and no position-independent hash on two sides.

How a split is made (``--split train=0.8,valid=0.1,test=0.1 --by source --seed N``):

1. **Nodes** are the selected sources (``binaries.source``), each weighted by its
   function rows. Every binary of a source goes where its source goes, so no
   source is on two sides. Families are keyed by source (see
   :mod:`assemblage.corpus.families`), so a family can never span two sources
   and never two sides: families add no edges.
2. **Links** are pic hashes shared by functions of two or more sources (a
   vendored file, a fork, a helper compiled identically; also library code
   inlined from system headers, such as mingw's ``printf`` wrapper, which three
   of the four sample projects built for Windows share). Trivial functions never
   link (one ``_start`` would tie every project together): they are resolved by
   dropping (step 4).
3. **Merge or cut.** Links are taken from the most specific (fewest sources) to
   the most common, in a content order (their sorted source labels), and merge
   the components they touch with union-find unless the merged component
   would outweigh ``merge_limit`` of the corpus (by default the smallest
   requested ratio: a component bigger than the test side could only land in
   train). A link that would make such a giant is *cut*: its sources stay apart
   and step 4 drops its copies. So a fork merges with its origin, while a libc
   helper that appears in half the corpus is dropped where it leaks.
4. **Assign and drop.** Components are shuffled with the seed (starting from a
   content order, so the result does not depend on database ids) and each goes
   to the split with the largest remaining deficit (target weight minus weight
   so far). Any pic hash then found on more than one side (a cut link or a
   trivial function) is kept on the side holding most of its rows (ties: the
   first split named) and its rows elsewhere are dropped, with their ranges and
   lines. The report lists what was merged, what was cut, what was dropped and
   the ratios achieved.

Weights are function rows because functions are what models train on;
achieved ratios are reported by binaries and by functions. The split manifest
(``data/splits``, one row per binary) and this report go into every export.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from assemblage.errors import Problem, SelectionError

__all__ = ["SplitSpec", "SplitReport", "UnionFind", "plan_components", "assign", "parse_split"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class SplitSpec(BaseModel):
    """``train=0.8,valid=0.1,test=0.1``: named sides and their shares (summing to 1), by source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ratios: dict[str, float] = Field(description="side name -> share; names [a-z][a-z0-9_]*, shares sum to 1")
    by: Literal["source"] = Field("source", description="what may not be on two sides: source projects")
    merge_limit: float | None = Field(
        None, gt=0, le=1, description="the largest share a merged component may reach (default: the smallest ratio)"
    )

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: dict[str, float]) -> dict[str, float]:
        if not 1 <= len(v) <= 20:
            raise ValueError("give between 1 and 20 sides")
        for name, share in v.items():
            if not _NAME.match(name):
                raise ValueError(f"side name {name!r}: use [a-z][a-z0-9_]* (at most 40 characters)")
            if not 0 < share <= 1:
                raise ValueError(f"{name}={share}: a share is in (0, 1]")
        if abs(sum(v.values()) - 1) > 1e-6:
            raise ValueError(f"the shares sum to {sum(v.values()):g}, not 1")
        return v

    @property
    def names(self) -> list[str]:
        return list(self.ratios)

    @property
    def limit(self) -> float:
        return self.merge_limit if self.merge_limit is not None else min(self.ratios.values())


def parse_split(text: str, *, by: str = "source", merge_limit: float | None = None) -> SplitSpec:
    """``train=0.8,valid=0.1,test=0.1`` -> SplitSpec (problems located at ``--split``)."""
    ratios: dict[str, float] = {}
    problems = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            share = float(value)
        except ValueError:
            problems.append(Problem(f"--split {part}", "expected NAME=SHARE, e.g. train=0.8"))
            continue
        if name in ratios:
            problems.append(Problem(f"--split {part}", f"side {name!r} is named twice"))
        ratios[name.strip()] = share
    if problems:
        raise SelectionError(problems)
    try:
        return SplitSpec(ratios=ratios, by=by, merge_limit=merge_limit)
    except ValidationError as exc:
        where = {"ratios": "--split", "by": "--by", "merge_limit": "--merge-limit"}
        raise SelectionError(
            [
                Problem(
                    where.get(str(e["loc"][0]) if e["loc"] else "", "--split"), e["msg"].removeprefix("Value error, ")
                )
                for e in exc.errors(include_url=False)
            ]
        ) from None


class UnionFind:
    """Disjoint sets over hashable items (path halving, union by size)."""

    def __init__(self, items: Iterable[str]) -> None:
        self.parent = {x: x for x in items}
        self.size = {x: 1 for x in self.parent}

    def find(self, x: str) -> str:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: str, b: str) -> str:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self.size[ra] < self.size[rb] or (self.size[ra] == self.size[rb] and rb < ra):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        return ra


class SplitReport(BaseModel):
    """What the split did, for the datasheet and ``export.json``."""

    ratios: dict[str, float]
    by: str
    seed: int
    merge_limit: float
    sources: int = 0
    components: int = 0
    merged: list[list[str]] = Field(default_factory=list, description="components of more than one source")
    links_merged: int = Field(0, description="shared pic hashes whose sources were merged")
    links_cut: int = Field(0, description="shared pic hashes left across sources (their copies dropped)")
    dropped_pic_hashes: int = Field(0, description="pic hashes kept on one side only")
    dropped_functions: dict[str, int] = Field(default_factory=dict, description="function rows dropped, by side")
    binaries: dict[str, int] = Field(default_factory=dict)
    functions: dict[str, int] = Field(default_factory=dict)
    achieved: dict[str, float] = Field(default_factory=dict, description="share of function rows, by side")
    achieved_binaries: dict[str, float] = Field(default_factory=dict)
    sides: dict[str, str] = Field(default_factory=dict, description="source -> side")


def plan_components(weights: dict[str, int], links: Counter, limit: float) -> tuple[UnionFind, int, int]:
    """Merge sources along links unless a merge would exceed ``limit`` of the total weight.

    ``links`` counts shared pic hashes per frozenset of sources. Returns the union-find and how many
    pic hashes were merged and cut.
    """
    uf = UnionFind(sorted(weights))
    total = sum(weights.values()) or 1
    comp_weight = dict(weights)
    merged = cut = 0
    for group in sorted(links, key=lambda g: (len(g), sorted(g))):
        roots = sorted({uf.find(s) for s in group})
        if len(roots) == 1:
            merged += links[group]
            continue
        combined = sum(comp_weight[r] for r in roots)
        if combined / total > limit:
            cut += links[group]
            continue
        root = roots[0]
        for other in roots[1:]:
            root = uf.union(root, other)
        comp_weight[root] = combined
        merged += links[group]
    return uf, merged, cut


def assign(uf: UnionFind, weights: dict[str, int], spec: SplitSpec, seed: int) -> dict[str, str]:
    """source -> side: components in a seeded order, each to the side furthest below its target."""
    comps: dict[str, list[str]] = {}
    for s in sorted(weights):
        comps.setdefault(uf.find(s), []).append(s)
    order = sorted(comps.values(), key=lambda members: members[0])  # content order, not ids
    random.Random(seed).shuffle(order)
    total = sum(weights.values())
    target = {name: share * total for name, share in spec.ratios.items()}
    have = dict.fromkeys(spec.ratios, 0.0)
    sides: dict[str, str] = {}
    for members in order:
        w = sum(weights[s] for s in members)
        side = max(spec.names, key=lambda n: (target[n] - have[n], -spec.names.index(n)))
        have[side] += w
        for s in members:
            sides[s] = side
    return sides
