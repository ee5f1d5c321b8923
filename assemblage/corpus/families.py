"""Function families: the same source function in every configuration it was built under.

A family is one (source, source file, declaration line, name): the source as
the recipe names it, and the function's place in that source as the debug
information gives it. Every function row with those four values belongs to it,
whatever the compiler, version, optimisation level or binary (an executable and
a shared library of one project share families). Functions with no source file
or declaration line (symbol-table-only labels such as ``_start``) belong to no
family (``family_id`` is null).

**Ids are content hashes**, not database ids: ``family_id`` is the first 63 bits
of ``sha256(source \\x1f source_file \\x1f decl_line \\x1f name)``. The same
recipe exported from the embedded dataset and from the service therefore gets
the same family ids, an export can be compared with another without a join
table, and assigning one needs no state (the export computes it row by row
while streaming). At 10 million families the chance that two of them share an
id is about 5e-6.

**Pairs** (``--pairs K``): for every family with members in at least two
binaries, up to K positive pairs of functions from two different binaries,
drawn without replacement by a generator seeded with (seed, family id), so a
family's pairs do not depend on which other families were selected. Members
are ordered by content (configuration, file, address) before drawing, so the
draw is the same on any database. The export streams the functions in family
order (the database sorts), holding one family at a time.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["family_id", "family_ids", "sample_pairs"]

_MASK = (1 << 63) - 1


def family_id(source: str, source_file: str | None, decl_line: int | None, name: str) -> int | None:
    """The family of one function, or None when its source position is unknown."""
    if source_file is None or decl_line is None:
        return None
    key = f"{source}\x1f{source_file}\x1f{decl_line}\x1f{name}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") & _MASK


def family_ids(rows: Iterable[tuple[Any, Any, Any, Any]]) -> list[int | None]:
    """family_id over (source, source_file, decl_line, name) tuples."""
    sha = hashlib.sha256
    out: list[int | None] = []
    append = out.append
    for source, source_file, decl_line, name in rows:
        if source_file is None or decl_line is None:
            append(None)
        else:
            append(
                int.from_bytes(sha(f"{source}\x1f{source_file}\x1f{decl_line}\x1f{name}".encode()).digest()[:8], "big")
                & _MASK
            )
    return out


def sample_pairs(
    members: Iterable[tuple[Any, ...]], *, per_family: int, seed: int
) -> Iterator[tuple[int, tuple[Any, ...], tuple[Any, ...]]]:
    """(family_id, member_a, member_b) for sampled pairs of members.

    ``members`` are rows (source, source_file, decl_line, name, function_id, binary_id, sort_key, ...)
    sorted so that one family's rows are adjacent; ``sort_key`` orders a family by content.
    """
    group: list[tuple[Any, ...]] = []
    key: tuple[Any, ...] | None = None
    for row in members:
        k = row[:4]
        if k != key:
            if group and key is not None:
                yield from _pairs_of(key, group, per_family, seed)
            group, key = [], k
        group.append(row)
    if group and key is not None:
        yield from _pairs_of(key, group, per_family, seed)


def _pairs_of(
    key: tuple[Any, ...], group: list[tuple[Any, ...]], k: int, seed: int
) -> Iterator[tuple[int, tuple[Any, ...], tuple[Any, ...]]]:
    fam = family_id(*key)
    if fam is None or len(group) < 2:
        return
    if len({r[5] for r in group}) < 2:
        return  # every member in one binary: no pair across binaries
    group.sort(key=lambda r: r[6])
    n = len(group)
    rng = random.Random(f"{seed}:{fam}")
    if n * (n - 1) // 2 <= 4 * k:  # small family: draw from the full list of pairs
        candidates = [(i, j) for i in range(n) for j in range(i + 1, n) if group[i][5] != group[j][5]]
        chosen = candidates if len(candidates) <= k else sorted(rng.sample(candidates, k))
    else:  # large family: draw index pairs, rejecting repeats and pairs inside one binary
        seen: set[tuple[int, int]] = set()
        attempts = 0
        while len(seen) < k and attempts < 50 * k:
            attempts += 1
            i, j = sorted(rng.sample(range(n), 2))
            if group[i][5] != group[j][5]:
                seen.add((i, j))
        chosen = sorted(seen)
    for i, j in chosen:
        yield fam, group[i], group[j]
