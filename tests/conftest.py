from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "recipes" / "samples"


def need(*commands: str) -> None:
    """Skip the test with a reason when a command it needs is not installed."""
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


@pytest.fixture
def samples() -> Path:
    return SAMPLES
