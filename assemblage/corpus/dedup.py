"""Duplicates and trivial functions: what a corpus holds twice, and what is not worth learning from.

Three kinds of duplicates are counted (never silently removed; the export's
options drop what the user asks for):

* identical binaries: the same sha256 under two rows (gcc often emits the same
  bytes at ``O2`` and ``O3``; a source may appear in two runs);
* identical functions by their exact bytes (``functions.hash``);
* identical functions by the position-independent hash (``functions.pic_hash``:
  the same code at another address, see :mod:`assemblage.binaries.hashing`).

Every count is "before" (rows) and "after" (what is left when each group of
equal hashes keeps one row; rows whose hash is unknown cannot be merged and stay).

**Trivial functions** are flagged (``functions.trivial`` in exports) so they can
be dropped (``--drop-trivial``). The rule, in SQL and in Python alike
(:func:`trivial_clause`, :func:`is_trivial`):

* size 0: a symbol with no bytes (``_init``, ``_fini`` and the crt helpers show
  up as size-0 symbols in our tables when their DWARF-less code is not sized);
* the C runtime's start-up and tear-down code, linked into every program and
  identical across projects (names in :data:`CRT_NAMES`): glibc/gcc's
  ``_start``, ``_init``, ``_fini``, ``deregister_tm_clones``,
  ``register_tm_clones``, ``__do_global_dtors_aux``, ``frame_dummy``,
  ``__libc_csu_init``, ``__libc_csu_fini``, ``_dl_relocate_static_pie``; mingw's
  ``mainCRTStartup``, ``WinMainCRTStartup``, ``__tmainCRTStartup``,
  ``_DllMainCRTStartup``, ``DllMainCRTStartup``, ``__main``,
  ``__do_global_ctors``, ``__do_global_dtors``, ``_pei386_runtime_relocator``,
  ``__gcc_register_frame``, ``__gcc_deregister_frame``, ``pre_c_init``,
  ``pre_cpp_init``; MSVC's ``__scrt_common_main_seh`` and ``_RTC_*`` checks;
* thunks: C++ this-adjusting, virtual and covariant thunks (``_ZThn``, ``_ZTv``,
  ``_ZTc``), i386 PC thunks (``__x86.get_pc_thunk.*``), import thunks
  (``__imp_*``) and PLT stubs (``*@plt``).

Why the flag matters for splits: on the sample projects (recipes/samples) built
with gcc-12 and clang-19, ``_start`` had one pic_hash in all 16 Linux
executables of the four projects, so without it one crt function would link
every project to every other.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import Boolean, Column, Integer, MetaData, Table, Text, case, func, insert, or_, select, type_coerce
from sqlalchemy.sql import ColumnElement

__all__ = [
    "CRT_NAMES",
    "THUNK_PREFIXES",
    "THUNK_SUFFIXES",
    "trivial_clause",
    "trivial_column",
    "is_trivial",
    "Counts",
    "DedupReport",
    "dedup_report",
]

CRT_NAMES = frozenset(
    {
        # glibc / gcc (ELF)
        "_start",
        "_init",
        "_fini",
        "deregister_tm_clones",
        "register_tm_clones",
        "__do_global_dtors_aux",
        "frame_dummy",
        "__libc_csu_init",
        "__libc_csu_fini",
        "_dl_relocate_static_pie",
        # mingw-w64 (PE)
        "mainCRTStartup",
        "WinMainCRTStartup",
        "__tmainCRTStartup",
        "_DllMainCRTStartup",
        "DllMainCRTStartup",
        "__main",
        "__do_global_ctors",
        "__do_global_dtors",
        "_pei386_runtime_relocator",
        "__gcc_register_frame",
        "__gcc_deregister_frame",
        "pre_c_init",
        "pre_cpp_init",
        # MSVC's vcruntime start-up
        "__scrt_common_main_seh",
        "__scrt_common_main",
    }
)
THUNK_PREFIXES = ("_ZThn", "_ZTv", "_ZTc", "__x86.get_pc_thunk.", "__imp_", "_RTC_")
THUNK_SUFFIXES = ("@plt",)


def trivial_clause(f: Any) -> ColumnElement[bool]:
    """SQL: whether a row of ``functions`` (``f``: the table or an alias) is trivial."""
    return or_(
        f.c.size == 0,
        f.c.name.in_(sorted(CRT_NAMES)),
        *(f.c.name.startswith(p, autoescape=True) for p in THUNK_PREFIXES),
        *(f.c.name.endswith(s, autoescape=True) for s in THUNK_SUFFIXES),
    )


def trivial_column(f: Any) -> ColumnElement[bool]:
    """The flag as a boolean column (``trivial``) for the exports."""
    return type_coerce(case((trivial_clause(f), True), else_=False), Boolean).label("trivial")


def is_trivial(name: str, size: int) -> bool:
    """The same rule in Python."""
    return size == 0 or name in CRT_NAMES or name.startswith(THUNK_PREFIXES) or name.endswith(THUNK_SUFFIXES)


class Counts(BaseModel):
    before: int
    after: int

    @property
    def removed(self) -> int:
        return self.before - self.after


class DedupReport(BaseModel):
    """Counts before and after deduplication, over one selection."""

    binaries: Counts  # by sha256
    functions_exact: Counts  # by functions.hash
    functions_pic: Counts  # by functions.pic_hash
    trivial: int  # functions flagged trivial
    functions_nontrivial_pic: Counts  # by pic_hash, trivial functions dropped first
    unhashed_exact: int  # functions with no exact hash (cannot be merged)
    unhashed_pic: int


def dedup_report(conn: Any, sel: Any, functions: Any, binaries: Any) -> DedupReport:
    """The counts over the binaries in ``sel`` (a table with ``binary_id``) and their ``functions``."""
    f, b = functions, binaries
    nb, nh = conn.execute(
        select(func.count(), func.count(func.distinct(b.c.hash))).select_from(b.join(sel, sel.c.binary_id == b.c.id))
    ).one()
    joined = f.join(sel, sel.c.binary_id == f.c.binary_id)
    triv = trivial_clause(f)
    if conn.dialect.name == "sqlite":
        # SQLite: the three columns the counts need, copied once into a narrow temporary table (the rows of
        # ``functions`` carry their source text: each scan of them reads it all), then each distinct count
        # as a GROUP BY on it (SQLite's sorter, spilled to temporary files: memory stays flat) rather than a
        # count(DISTINCT) (a temporary b-tree per count): 0.3 s of CPU instead of 0.65 s on the 100,320
        # functions of bench/export.py
        keys = Table(
            "asm_dedup_keys",
            MetaData(),
            Column("hash", Text),
            Column("pic_hash", Text),
            Column("triv", Integer),
            prefixes=["TEMPORARY"],
        )
        keys.drop(conn, checkfirst=True)
        keys.create(conn)
        conn.execute(
            insert(keys).from_select(
                ["hash", "pic_hash", "triv"],
                select(f.c.hash, f.c.pic_hash, case((triv, 1), else_=0)).select_from(joined),
            )
        )
        k_triv = keys.c.triv == 1

        # two sorts: by hash, and by pic hash, where a group with a non-trivial member counts for the third
        exact_groups = select(keys.c.hash).where(keys.c.hash.is_not(None)).group_by(keys.c.hash).subquery()
        pic_groups = (
            select(func.min(keys.c.triv).label("all_trivial"))
            .where(keys.c.pic_hash.is_not(None))
            .group_by(keys.c.pic_hash)
            .subquery()
        )
        sums = conn.execute(
            select(
                func.count(),
                func.sum(case((keys.c.hash.is_(None), 1), else_=0)),
                func.sum(case((keys.c.pic_hash.is_(None), 1), else_=0)),
                func.sum(keys.c.triv),
                func.sum(case((keys.c.pic_hash.is_(None) & ~k_triv, 1), else_=0)),  # the rule only where no pic hash
            )
        ).one()
        n_exact = conn.scalar(select(func.count()).select_from(exact_groups))
        n_pic, n_nontrivial_pic = conn.execute(
            select(func.count(), func.sum(case((pic_groups.c.all_trivial == 0, 1), else_=0)))
        ).one()
        keys.drop(conn)
        row = (sums[0], n_exact, sums[1], n_pic, sums[2], sums[3], n_nontrivial_pic, sums[4])
    else:
        kept_pic = case((~triv, f.c.pic_hash))  # NULL for trivial functions: not counted as distinct
        row = conn.execute(  # one scan of the functions for every count
            select(
                func.count(),
                func.count(func.distinct(f.c.hash)),
                func.sum(case((f.c.hash.is_(None), 1), else_=0)),
                func.count(func.distinct(f.c.pic_hash)),
                func.sum(case((f.c.pic_hash.is_(None), 1), else_=0)),
                func.sum(case((triv, 1), else_=0)),
                func.count(func.distinct(kept_pic)),
                func.sum(case((~triv & f.c.pic_hash.is_(None), 1), else_=0)),
            ).select_from(joined)
        ).one()
    rows, exact, no_exact, pic, no_pic, trivial, nt_pic, nt_no_pic = (int(x or 0) for x in row)
    nt_rows = rows - trivial
    return DedupReport(
        binaries=Counts(before=int(nb), after=int(nh)),
        functions_exact=Counts(before=rows, after=exact + no_exact),
        functions_pic=Counts(before=rows, after=pic + no_pic),
        trivial=trivial,
        functions_nontrivial_pic=Counts(before=nt_rows, after=nt_pic + nt_no_pic),
        unhashed_exact=no_exact,
        unhashed_pic=no_pic,
    )
