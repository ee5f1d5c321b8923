"""Telling a third-party parser failing on its input from a bug of ours.

pyelftools does not keep to its own exception types: on hostile input it also
raises ``AttributeError``, ``TypeError``, ``KeyError`` and ``IndexError`` from
deep inside (seen when relocating the DWARF of mutated ``.o`` files). Catching
those types wholesale would also hide the same errors raised by our own code,
so a call into such a library converts an exception only when it was raised
*inside* the library: the innermost frame of its traceback belongs to the
library's package. An error raised in our frames propagates.
"""

from __future__ import annotations

__all__ = ["raised_inside"]


def raised_inside(exc: BaseException, *packages: str) -> bool:
    """Whether the innermost Python frame of ``exc``'s traceback is in one of ``packages``."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "")
    return any(module == p or module.startswith(p + ".") for p in packages)
