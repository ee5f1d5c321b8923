"""Trying a tree's build systems in turn, with its dependencies installed first.

The engine hands over the candidates (``debian-rules`` first for a Debian
source, then CMake, Meson, autotools, make, the plain fallback) and this loop:

1. before ``debian-rules``, resolves the package's ``Build-Depends`` against
   apt's lists and provisions them (:mod:`assemblage.builds.deps`: a derived
   image for the docker runner, the host when allowed for the local runner).
   When they cannot be had, the rules are not used and the next build system
   is tried; the build records ``missing_dependency`` only if nothing works;
2. runs the plan; when it fails and the log names missing dependencies
   (:func:`~assemblage.builds.needs.needs_from_log`), resolves them to Debian
   packages, provisions them and runs the same build system once more from a
   clean tree;
3. when a build system fails, at configure *or* build time, tries the next
   one from a clean tree (a project's experimental CMake build next to its
   working autotools build is common);
4. counts a build whose steps all exited 0 but whose compiler wrappers
   recorded failed commands as failed (:mod:`assemblage.builds.failures`);
5. goes on to the next build system when one finishes without building any
   binary of the kinds asked for.

When no build system gives binaries, the failure reported is the first
build system's (the tree's preferred one), since that is the build the tree
meant, and ``no_binaries`` only when none failed; the log keeps every attempt.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from assemblage._spawn import copy_file
from assemblage.builds.collect import find_binaries, snapshot
from assemblage.builds.deps import Provisioner, ProvisionResult
from assemblage.builds.failures import FAILURES_FILE, read_failures
from assemblage.builds.plan import BuildTools, Planner, Step
from assemblage.builds.runner import CappedLog, LocalRunner, StepResult, builds_stopped
from assemblage.errors import BuildError
from assemblage.toolchains.base import CompilerSet

__all__ = ["Attempt", "Tried", "try_build_systems"]


@dataclass(kw_only=True)
class Attempt:
    """Everything one build's attempts share."""

    source_dir: Path  # the fetched template tree
    src: Path  # the private copy that is built
    scratch: Path
    runner: LocalRunner
    compilers: CompilerSet
    tools: BuildTools
    env: dict[str, str]
    log: CappedLog
    log_path: Path
    jobs: int
    kinds: frozenset[str]  # the binaries that count (executable, shared...)
    timeout: float  # for all attempts together
    started: float  # time.monotonic() when the first attempt began


@dataclass(kw_only=True)
class Tried:
    """The outcome of the attempts: the step that ended the build, or a verdict of our own."""

    planner: str | None = None
    last: StepResult | None = None
    failed: bool = False
    before: dict[str, tuple[int, int]] = field(default_factory=dict)
    verdict: tuple[str, str, str] | None = None  # (status, reason, message) overriding classify_failure
    dependencies: list[str] = field(default_factory=list)
    image: str | None = None
    digest: str | None = None


def _reset(a: Attempt) -> None:
    shutil.rmtree(a.src)
    shutil.copytree(a.source_dir, a.src, symlinks=True, copy_function=copy_file)


def _log_size(a: Attempt) -> int:
    if hasattr(a.log, "text_since"):  # a CappedLog (builds.runner): positions count what was cut too
        return a.log.tell()
    a.log.flush()
    return os.path.getsize(a.log_path)


def _log_since(a: Attempt, offset: int) -> str:
    if hasattr(a.log, "text_since"):
        return a.log.text_since(offset, a.log_path)[-4_000_000:]
    a.log.flush()
    with open(a.log_path, encoding="utf-8", errors="replace") as fh:
        fh.seek(offset)
        return fh.read(4_000_000)


class _Deps:
    """The build's dependency state: what was added, and the runner that has it."""

    def __init__(self, a: Attempt) -> None:
        self.a = a
        image = getattr(a.runner, "image", None)
        self.provisioner = Provisioner(a.runner.name, image=image, foreign_arch=_host_arch(a.compilers))
        self.packages: list[str] = []
        self.image: str | None = None
        self.digest: str | None = None

    def add(self, packages: list[str]) -> ProvisionResult:
        wanted = sorted(set(self.packages) | set(packages))
        try:
            res = self.provisioner.provision(wanted, self.a.log)
        except BuildError as exc:
            return ProvisionResult(ok=False, message=str(exc))
        if res.ok:
            self.packages = res.added
            if res.image:
                from assemblage.builds.docker_runner import DockerRunner

                self.image, self.digest = res.image, res.digest
                self.a.runner = DockerRunner(self.a.runner.limits, image=res.image)
                # the planners look their tools up in the image that now builds
                self.a.tools = dataclasses.replace(self.a.tools, which=self.a.runner.which)
        return res


def _debian_packages(a: Attempt) -> tuple[list[str], list[str]]:
    from assemblage.builds.aptindex import BinaryArchive, debian_arch
    from assemblage.builds.debian import build_depends, build_profiles

    archive = BinaryArchive.load()
    res = archive.satisfy(
        build_depends(a.src), host_arch=debian_arch(a.compilers.arch), profiles=build_profiles(a.compilers)
    )
    if a.compilers.cross:
        triple = {"arm64": "aarch64-linux-gnu", "armhf": "arm-linux-gnueabihf"}[debian_arch(a.compilers.arch)]
        res.packages = sorted(
            set(res.packages) | {f"crossbuild-essential-{debian_arch(a.compilers.arch)}", f"binutils-{triple}"}
        )
    return res.packages, res.unsatisfiable


def _mark_configure(steps: list[Step], failures: str) -> list[Step]:
    """Configure steps probe the compiler on purpose: their failures are not recorded."""
    return [
        dataclasses.replace(s, env={**s.env, "ASSEMBLAGE_COMPILER_FAILURES": ""})
        if s.phase == "configure"
        else dataclasses.replace(s, env={"ASSEMBLAGE_COMPILER_FAILURES": failures, **s.env})
        for s in steps
    ]


def _run_once(a: Attempt, planner: Planner) -> Tried:
    failures = a.scratch / FAILURES_FILE
    failures.unlink(missing_ok=True)
    view = a.runner.view(a.scratch)
    before = snapshot(a.src)
    steps = _mark_configure(planner.plan(a.src, a.compilers, a.tools, jobs=a.jobs), f"{view}/{FAILURES_FILE}")
    remaining = a.timeout - (time.monotonic() - a.started)
    results = a.runner.run(steps, a.scratch, "src", a.env, a.log, timeout=remaining)
    last = results[-1] if results else None
    failed = last is not None and (last.timed_out or last.returncode != 0)
    tried = Tried(planner=planner.name, last=last, failed=failed, before=before)
    if not failed:
        ignored = read_failures(failures)
        if ignored:
            first = ignored[0]
            reason = "link_error" if first.links else "compile_error"
            msg = f"{len(ignored)} compiler/linker command(s) failed but the build went on; first: {first}"
            a.log.write(f"\n! {msg}\n")
            tried.failed, tried.verdict = True, ("failed", reason, msg)
    return tried


def _retry_with_needs(a: Attempt, deps: _Deps, text: str, seen: set) -> bool:
    """Resolve what the log says is missing and provision it; True when a retry makes sense."""
    from assemblage.builds.needs import needs_from_log, resolve

    needs = [n for n in needs_from_log(text) if n not in seen]
    seen.update(needs)
    if not needs:
        return False
    a.log.write(f"\n# the build asked for: {', '.join(map(str, needs))}\n")
    try:
        found, unknown = resolve(needs, compiler=a.compilers.cxx, host_arch=deps.provisioner.foreign_arch)
    except BuildError as exc:
        a.log.write(f"! cannot look dependencies up: {exc}\n")
        return False
    if unknown:
        a.log.write(f"# no Debian package provides: {', '.join(map(str, unknown))}\n")
    new = sorted(set(found.values()) - set(deps.packages))
    new = deps.provisioner.missing(new) if new else []
    if not new:
        a.log.write("# nothing to install (already present or unknown)\n")
        return False
    a.log.write(f"# resolved: {', '.join(f'{n} -> {p}' for n, p in sorted(found.items()))}\n")
    res = deps.add(new)
    if not res.ok:
        raise _Unprovisioned(res.message or "cannot install the build's dependencies")
    return True


def _host_arch(compilers: CompilerSet) -> str | None:
    """A Linux cross build's Debian architecture (its multiarch packages), None for a native build."""
    if compilers.cross and compilers.platform == "linux":
        from assemblage.builds.aptindex import debian_arch

        return debian_arch(compilers.arch)
    return None


class _Unprovisioned(Exception):
    pass


def try_build_systems(a: Attempt, candidates: list[Planner]) -> Tried:
    """Run the candidates in order until one builds (see the module's docstring)."""
    deps = _Deps(a)
    first: Tried | None = None  # the first failure
    empty: Tried | None = None  # the first success that built no binary
    tried = Tried()
    dirty = False  # whether a step ran in the tree since it was copied (a refused debian-rules runs none)
    for i, planner in enumerate(candidates):
        if i > 0:
            if not tried.failed:
                outcome = "built no binary"
            else:
                phase = "configure" if tried.last and tried.last.step.phase == "configure" else "build"
                outcome = f"failed ({tried.verdict[1] if tried.verdict else phase})"
            a.log.write(f"\n# {candidates[i - 1].name} {outcome}; trying {planner.name}\n")
            if dirty:
                _reset(a)
                dirty = False
        a.log.write(f"# build system: {planner.name}\n# compilers: {a.compilers.cc} / {a.compilers.cxx}\n")
        if planner.name == "debian-rules":
            try:
                packages, unsatisfiable = _debian_packages(a)
            except BuildError as exc:
                packages, unsatisfiable = [], [str(exc)]
            a.log.write(f"# Build-Depends: {' '.join(packages) or '(none)'}\n")
            res = (
                deps.add(packages)
                if not unsatisfiable
                else ProvisionResult(
                    ok=False, message=f"Build-Depends not satisfiable from the archive: {'; '.join(unsatisfiable)}"
                )
            )
            if not res.ok:
                verdict = ("failed", "missing_dependency", f"debian/rules not used: {res.message}")
                tried = Tried(planner=planner.name, failed=True, verdict=verdict)
                a.log.write(f"! {verdict[2]}\n")
                first = first or tried
                continue
        seen: set = set()
        retried = False
        while True:
            offset = _log_size(a)
            dirty = True
            tried = _run_once(a, planner)
            if not tried.failed or (tried.last and tried.last.timed_out) or builds_stopped() or retried:
                break
            try:
                again = _retry_with_needs(a, deps, _log_since(a, offset), seen)
            except _Unprovisioned as exc:
                tried.verdict = ("failed", "missing_dependency", str(exc))
                a.log.write(f"! {exc}\n")
                break
            if not again:
                break
            retried = True
            a.log.write(f"\n# retrying {planner.name} with {' '.join(deps.packages)} installed\n")
            _reset(a)
        if (tried.last and tried.last.timed_out) or builds_stopped():
            break
        if not tried.failed:
            if find_binaries(a.src, tried.before, kinds=set(a.kinds)):
                break
            # a fallback that "succeeds" by building nothing (st's Makefile after its rules failed)
            # must not hide why the real build failed; the next build system may do better
            a.log.write(f"\n# {planner.name} built nothing of the kinds asked for\n")
            empty = empty or tried
            continue
        first = first or tried
    else:  # no build system gave binaries: say why the preferred one failed, else "no binaries"
        tried = first or empty or tried
    tried.dependencies, tried.image, tried.digest = deps.packages, deps.image, deps.digest
    return tried
