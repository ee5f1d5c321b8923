"""Itanium C++ demangling of linkage names (cxxfilt), shared by the DWARF reader and the hashing worker."""

from __future__ import annotations

__all__ = ["demangle"]


def demangle(name: str | None) -> str | None:
    """Itanium C++ demangling via cxxfilt (None when not mangled or not demanglable)."""
    if not name or not name.startswith("_Z") or len(name) > 4096:
        return None
    try:
        import cxxfilt
    except ImportError:
        return None
    try:
        out = cxxfilt.demangle(name, external_only=False)
    except cxxfilt.Error:  # InvalidName, or the C++ runtime missing (LibraryNotFound)
        return None
    return out if out and out != name else None
