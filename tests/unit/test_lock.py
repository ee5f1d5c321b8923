"""constraints.txt (the lock `make` installs from) pins every dependency pyproject.toml declares.

A dependency added to pyproject.toml (or to one of its extras) without `make lock` would be
installed at whatever version is newest that day; this test names it instead.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> dict[str, Requirement]:
    """Every requirement of pyproject.toml: the dependencies and those of every extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return {canonical(Requirement(line).name): Requirement(line) for line in lines}


def pins() -> dict[str, str]:
    out: dict[str, str] = {}
    for n, raw in enumerate((ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        assert m, f"constraints.txt:{n}: {raw!r} is not an exact pin NAME==VERSION"
        name = canonical(m.group(1))
        assert name not in out, f"constraints.txt:{n}: {name} is pinned twice"
        out[name] = m.group(2)
    return out


def test_every_declared_dependency_is_pinned_exactly():
    have = pins()
    missing = sorted(name for name in declared() if name not in have)
    assert not missing, f"constraints.txt lacks {missing}: run `make lock` (README, 'Python packages: the lock')"


def test_every_pin_satisfies_pyproject():
    have = pins()
    wrong = [
        f"{name}=={have[name]} (pyproject.toml: {req})"
        for name, req in declared().items()
        if name in have and req.specifier and not req.specifier.contains(have[name], prereleases=True)
    ]
    assert not wrong, f"constraints.txt pins versions pyproject.toml refuses: {wrong}; run `make lock`"


def test_extras_of_declared_dependencies_are_pinned_too():
    """celery[redis] needs redis, moto[server] needs flask...: the lock holds the closure, not only the top level."""
    have = pins()
    assert {"redis", "kombu", "click", "starlette", "pydantic-core"} <= set(have)


def test_make_installs_from_the_lock():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    installs = [line for line in makefile.splitlines() if re.search(r"pip install .*-e '\.\[", line)]
    assert installs, "Makefile: no pip install of the project"
    unlocked = [line.strip() for line in installs if "-c constraints.txt" not in line and "LOCK_VENV" not in line]
    assert not unlocked, f"Makefile installs without the lock: {unlocked}"
    assert re.search(r"^lock:", makefile, re.M), "Makefile: no `lock` target to refresh constraints.txt"


def test_the_worker_image_installs_from_the_lock():
    dockerfile = (ROOT / "workers/linux/Dockerfile").read_text(encoding="utf-8")
    installs = [line.strip() for line in dockerfile.splitlines() if "pip install" in line and "--no-deps" not in line]
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    assert "!constraints.txt" in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
