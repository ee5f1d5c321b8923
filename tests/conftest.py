"""What every test shares: where the repository is, and the rule for missing prerequisites.

The rule: a test that cannot run because something it needs is missing (a
command not installed, a service not answering, namespaces unavailable) calls
:func:`unavailable` (or :func:`need` / the ``services`` fixture, which do).
On a developer's machine that is a skip with the reason shown. In CI
(``CI=true``) it is a failure: ``make test`` installs and starts everything the
suite needs, so a missing piece is a broken setup, not a reason to pass.

As a backstop, :func:`pytest_runtest_makereport` and
:func:`pytest_make_collect_report` turn *any* skip into a failure in CI, so a
``pytest.skip`` or ``skipif`` added later cannot make CI green by not running.
A case that does not apply (``.pdata`` on a 32-bit image) is left out of the
parametrisation instead of being skipped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "recipes" / "samples"

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
_CI_NOTE = "CI=true: make test installs and starts everything the suite needs, so this is a failure, not a skip"


def unavailable(reason: str) -> NoReturn:
    """Skip (a developer's machine) or fail (CI) because a prerequisite is missing; ``reason`` says which."""
    if IN_CI:
        pytest.fail(f"{reason} ({_CI_NOTE})", pytrace=False)
    pytest.skip(reason)


def need(*commands: str) -> None:
    """The test needs these commands on PATH: :func:`unavailable` names the missing ones."""
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        unavailable(f"not installed: {', '.join(missing)}")


@pytest.fixture
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def services() -> None:
    """PostgreSQL, Redis and S3 answer at the endpoints the service tests use (else :func:`unavailable`).

    Service test modules say ``pytestmark = [..., pytest.mark.usefixtures("services")]``.
    """
    from tests.integration.service_stack import require_services

    require_services()


def _skip_reason(longrepr: object) -> str:
    text = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI: {_skip_reason(report.longrepr)} ({_CI_NOTE})"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"module skipped in CI: {_skip_reason(report.longrepr)} ({_CI_NOTE})"
