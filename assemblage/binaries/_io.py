"""Reading a binary whole, within a size budget; every failure is an InvalidBinaryError."""

from __future__ import annotations

import os

from ..errors import InvalidBinaryError

__all__ = ["read_bounded"]


def read_bounded(path: str, limit: int, what: str) -> bytes:
    """The bytes of ``path`` (``what`` names the format in messages), refused over ``limit`` bytes."""
    try:
        size = os.path.getsize(path)
        if size > limit:
            raise InvalidBinaryError(path, f"{what} of {size} bytes is over the {limit}-byte budget")
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise InvalidBinaryError(path, f"cannot read {what}: {exc.strerror or exc}") from None
