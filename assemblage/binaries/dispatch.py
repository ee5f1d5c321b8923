"""Which reader a file needs, from its magic bytes: ``sniff`` and ``analyze_file``."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import InvalidBinaryError
from ._gc import paused_gc
from .model import BinaryAnalysis

__all__ = ["PDB_MAGIC", "BinaryFormat", "analyze_file", "formats", "register_format", "sniff"]

PDB_MAGIC = b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\x00\x00\x00"
HEAD = 64  # bytes read to recognise a format


@dataclass(frozen=True, kw_only=True)
class BinaryFormat:
    """One file format: how its magic bytes are recognised, and which function analyses it.

    ``matches(head, fh)`` sees the first :data:`HEAD` bytes and the open file, for a matcher that must read
    elsewhere (PE's header offset): it seeks where it reads. ``analyzer`` is ``"module:function"``, imported
    when a file of the format is first analysed (a missing optional reader then says so); None with
    ``refusal`` for a format that is
    recognised but not analysed alone (a PDB).
    """

    name: str
    matches: Callable[[bytes, BinaryIO], bool]
    analyzer: str | None = None
    takes: tuple[str, ...] = ()  # which of analyze_file's keywords (pdb, lines) the analyzer takes
    refusal: str | None = None


_FORMATS: dict[str, BinaryFormat] = {}


def register_format(fmt: BinaryFormat) -> BinaryFormat:
    """Add a format; formats are tried in the order they were registered."""
    if fmt.name in _FORMATS:
        raise RuntimeError(f"binary format {fmt.name} registered twice")
    _FORMATS[fmt.name] = fmt
    return fmt


def formats() -> dict[str, BinaryFormat]:
    return dict(_FORMATS)


def _is_pe(head: bytes, fh: BinaryIO) -> bool:
    if head[:2] != b"MZ" or len(head) < 64:
        return False
    fh.seek(int.from_bytes(head[60:64], "little"))
    return fh.read(4) == b"PE\0\0"


register_format(
    BinaryFormat(
        name="elf",
        matches=lambda head, fh: head[:4] == b"\x7fELF",
        analyzer="assemblage.binaries.elf.analysis:analyze_elf",
        takes=("lines",),
    )
)
register_format(
    BinaryFormat(
        name="pdb",
        matches=lambda head, fh: head[: len(PDB_MAGIC)] == PDB_MAGIC,
        refusal="a PDB alone is not analysed; pass it with --pdb next to its PE",
    )
)
register_format(
    BinaryFormat(name="pe", matches=_is_pe, analyzer="assemblage.binaries.pe.analysis:analyze_pe", takes=("pdb",))
)


def sniff(path: str | os.PathLike[str]) -> str | None:
    """The name of a file's format from its magic bytes ("elf", "pe", "pdb"), or None (also when unreadable)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD)
            for fmt in _FORMATS.values():
                if fmt.matches(head, fh):
                    return fmt.name
    except OSError:
        return None
    return None


def analyze_file(
    path: str | os.PathLike[str], *, pdb: str | os.PathLike[str] | None = None, lines: bool = True
) -> BinaryAnalysis:
    """Analyse one binary, dispatching on its format. Raises InvalidBinaryError."""
    p = os.fspath(path)
    with paused_gc():  # see ._gc: the collector would only rescan what the analysis keeps
        return _analyze_file(p, pdb, lines)


def _analyzer(p: str, fmt: BinaryFormat) -> Callable[..., BinaryAnalysis]:
    module, _, name = (fmt.analyzer or "").partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            raise InvalidBinaryError(p, f"{fmt.name.upper()} analysis is not available") from None
        raise


def _analyze_file(p: str, pdb: str | os.PathLike[str] | None, lines: bool) -> BinaryAnalysis:
    name = sniff(p)
    if name is None:
        if not os.path.exists(p):
            raise InvalidBinaryError(p, "no such file")
        raise InvalidBinaryError(p, "not an ELF or PE file (unknown magic bytes)")
    fmt = _FORMATS[name]
    if fmt.analyzer is None:
        raise InvalidBinaryError(p, fmt.refusal or f"a {name} file is not analysed")
    given = {"pdb": pdb, "lines": lines}
    return _analyzer(p, fmt)(p, **{k: given[k] for k in fmt.takes})
