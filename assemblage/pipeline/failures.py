"""Saying what could not be done: a run too big, a fetch that raised what it should not have.

The changes of status these lead to (a failed source, a failed run) are
:mod:`assemblage.pipeline.states`'s. Every reason is redacted
(:func:`assemblage.urls.redact`) before it is stored: it is shown to read tokens.
"""

from __future__ import annotations

import logging

from assemblage.errors import Problem
from assemblage.urls import redact

__all__ = ["sources_counted", "too_many_builds", "unexpected_fetch_error"]

log = logging.getLogger(__name__)


def sources_counted(spec) -> int:
    """How many sources a recipe entry may become: a search or a selector counts as its ``limit``."""
    from assemblage.sources import kind_of

    return kind_of(spec).at_most(spec)


def too_many_builds(sources: int, configs: int, cap: int) -> Problem:
    """The problem of a run past the service's cap, with the numbers."""
    return Problem(
        "sources",
        f"{sources} source(s) x {configs} configuration(s) = {sources * configs} builds, "
        f"more than the {cap} this service takes in one run (ASSEMBLAGE_MAX_BUILDS_PER_RUN)",
    )


def unexpected_fetch_error(source_id: int, exc: BaseException) -> str:
    """Log an exception a fetch should not have raised (traceback redacted); the reason to record."""
    import traceback

    log.error(
        "source %s: fetching raised %s\n%s",
        source_id,
        type(exc).__name__,
        redact("".join(traceback.format_exception(exc))),
    )
    return redact(f"fetching failed unexpectedly ({type(exc).__name__}: {exc}); the worker's log has the details")
