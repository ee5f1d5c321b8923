"""One build: a private copy of the source, a plan, the runner, and the binaries that came out."""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from assemblage._spawn import copy_file
from assemblage.builds import reproducible
from assemblage.builds.attempts import Attempt, try_build_systems
from assemblage.builds.collect import FoundBinary, RefusedOutput, collect_binaries
from assemblage.builds.debian import DebianRulesPlanner, is_debian_tree
from assemblage.builds.plan import BuildTools, Step
from assemblage.builds.runner import CappedLog, Limits, LocalRunner, StepResult, builds_stopped, log_cap
from assemblage.builds.systems import build_system_candidates, compiler_env
from assemblage.builds.wrappers import write_wrappers
from assemblage.errors import BuildError, ToolchainError
from assemblage.recipes.matrix import Config
from assemblage.settings import read_setting
from assemblage.toolchains.registry import get_toolchain

__all__ = ["BuildOutcome", "BuildRequest", "classify_failure", "run_build"]


@dataclass(frozen=True, kw_only=True)
class BuildRequest:
    source_dir: Path  # the fetched tree (read-only template; copied, never modified)
    config: Config
    flags: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    kinds: frozenset[str] = frozenset({"executable", "shared"})
    jobs: int = 1  # parallel jobs inside the build (make -j)
    work_root: Path | None = None  # where scratch folders go (default: the system's temp folder)
    runner: str = "local"  # local (host toolchains) or docker (the toolchains of ``image``)
    image: str | None = None  # the docker runner's image (default: assemblage-linux:latest)
    source_date_epoch: int | None = None  # SOURCE_DATE_EPOCH (see builds.reproducible); None: the fixed default
    source_kind: str | None = None  # [h8-debian-deps] "debian": build by debian/rules first
    log_cap: int | None = None  # most bytes of build output the log keeps (head and tail); None: max_log_bytes
    max_binaries: int | None = None  # a build that leaves more fails as too_many_binaries (None: no cap)


@dataclass(kw_only=True)
class BuildOutcome:
    status: str  # succeeded, failed, timed_out, no_binaries, skipped
    reason: str | None = None
    message: str | None = None
    build_system: str | None = None
    duration: float = 0.0
    sandboxed: bool = False
    sandbox: str | None = None  # bubblewrap, docker or none (None: no step ran)
    refused: list[str] = field(default_factory=list)  # files the build left that were not taken (links...)
    binaries: list[FoundBinary] = field(default_factory=list)
    pdbs: dict[str, Path] = field(default_factory=dict)  # relpath of a PE -> its PDB
    scratch: Path | None = None  # caller removes it (``cleanup``) after storing the binaries
    collected: Path | None = None  # the copies of the binaries and PDBs taken out of the build (``cleanup``)
    strip_tool: str | None = None
    source_view: str | None = None  # where the build saw the source tree (debug paths start there)
    environment: reproducible.BuildEnvironment | None = None  # what reached the build (for the run's lock)
    # [h8-debian-deps] Debian packages installed for this build, and the derived image that has them
    dependencies: list[str] = field(default_factory=list)
    dependency_image: str | None = None
    dependency_image_digest: str | None = None

    def cleanup(self) -> None:
        if self.collected is not None:
            shutil.rmtree(self.collected, ignore_errors=True)
            self.collected = None
        if self.scratch is not None and not read_setting("keep_scratch", False):
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


def make_runner(req: BuildRequest) -> LocalRunner:
    """The runner the request asks for (a :class:`BuildError` when it cannot run here)."""
    if req.runner == "docker":
        from assemblage.builds.docker_runner import DEFAULT_IMAGE, DockerRunner

        return DockerRunner(req.limits, image=req.image or DEFAULT_IMAGE)
    if req.runner != "local":
        raise BuildError(f"unknown runner {req.runner!r} (expected local or docker)")
    return LocalRunner(req.limits)


def run_build(req: BuildRequest, log_path: Path) -> BuildOutcome:
    """Build ``req.source_dir`` under ``req.config``; the log (capped: head and tail) goes to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8", errors="replace") as fh:
        log = CappedLog(fh, req.log_cap or log_cap())
        try:
            return _run_build(req, log, log_path)
        finally:
            log.finish()


def _run_build(req: BuildRequest, log: CappedLog, log_path: Path) -> BuildOutcome:
    cfg = req.config
    log.write(f"# assemblage build {cfg.id}\n# source {req.source_dir.name}\n")
    try:
        tc = get_toolchain(cfg.toolchain)
    except ToolchainError as exc:
        log.write(f"! {exc}\n")
        return BuildOutcome(status="skipped", reason="toolchain_unknown", message=str(exc))
    if tc.remote_only:
        msg = f"{tc.name} runs only on Windows workers (queue msvc); this machine cannot build it"
        log.write(f"! {msg}\n")
        return BuildOutcome(status="skipped", reason="toolchain_unavailable", message=msg)
    compilers = tc.compilers(cfg.platform, cfg.arch, cfg.opt, req.flags)
    try:
        runner = make_runner(req)
    except BuildError as exc:
        log.write(f"! {exc}\n")
        return BuildOutcome(status="failed", reason="build_environment", message=str(exc))
    missing = compilers.missing(runner.which)
    if missing:
        msg = (
            f"{tc.name} for {cfg.platform}-{cfg.arch} is not installed {runner.where} "
            f"(missing {', '.join(missing)}); {runner.install_hint(tc.name)}"
        )
        log.write(f"! {msg}\n")
        return BuildOutcome(status="skipped", reason="toolchain_unavailable", message=msg)
    if runner.refusal:  # no sandbox and unsandboxed builds not allowed: fail closed
        log.write(f"! {runner.refusal}\n")
        return BuildOutcome(status="failed", reason="sandbox_unavailable", message=runner.refusal, sandbox=None)

    scratch = Path(tempfile.mkdtemp(prefix="asm-build-", dir=req.work_root))
    # held from now on: what is collected is read through it, even if the build renames its folder
    scratch_fd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    outcome = BuildOutcome(
        status="failed", scratch=scratch, sandboxed=runner.sandbox, sandbox=runner.isolation, strip_tool=compilers.strip
    )
    if not runner.sandbox:
        log.write(
            "! UNSANDBOXED BUILD: allow_unsandboxed is on and there is no sandbox here; the build has the "
            "network and the host's files\n"
        )
    try:
        src = scratch / "src"
        shutil.copytree(req.source_dir, src, symlinks=True, copy_function=copy_file)
        view = runner.view(scratch)
        repro = reproducible.prepare(runner, tc, compilers, view=view, epoch=req.source_date_epoch)
        outcome.source_view = f"{repro.debug_root(view)}/src"  # the prefix map writes /build there
        cc, cxx = write_wrappers(
            scratch / "bin",
            compilers,
            cfg.id,
            which=runner.which,
            extra_flags=repro.flags,
            random_seed=repro.random_seed,
        )
        repro.write_files(scratch / "bin")
        tools = BuildTools(
            cc=f"{view}/bin/{cc.name}", cxx=f"{view}/bin/{cxx.name}", src_dir=f"{view}/src", which=runner.which
        )
        candidates = build_system_candidates(src)
        # [h8-debian-deps] a Debian source is built by its own rules first (builds/debian.py)
        if req.source_kind == "debian" and is_debian_tree(src):
            candidates = [DebianRulesPlanner(), *candidates]
        if not candidates:
            outcome.reason, outcome.message = (
                "no_build_system",
                "no Makefile, CMakeLists.txt, configure, meson.build or C/C++ file found",
            )
            log.write(f"! {outcome.message}\n")
            return outcome
        env = {**runner.base_env(scratch), **compiler_env(compilers, tools.cc, tools.cxx), **repro.env}
        outcome.environment = repro.describe(
            runner=runner, compilers=compilers, env=env, build_path=tools.src_dir, limits=req.limits
        )
        log.write(f"# reproducible: SOURCE_DATE_EPOCH={repro.epoch}, wrapper flags {' '.join(repro.flags)}\n")
        if repro.problem:
            log.write(f"! {repro.problem}\n")
        started = time.monotonic()
        # [h8-debian-deps] build systems in turn, dependencies installed first (builds/attempts.py)
        tried = try_build_systems(
            Attempt(
                source_dir=req.source_dir,
                src=src,
                scratch=scratch,
                runner=runner,
                compilers=compilers,
                tools=tools,
                env=env,
                log=log,
                log_path=log_path,
                jobs=req.jobs,
                kinds=req.kinds,
                timeout=req.limits.timeout,
                started=started,
            ),
            candidates,
        )
        outcome.build_system, last, failed, before = tried.planner, tried.last, tried.failed, tried.before
        outcome.dependencies, outcome.dependency_image = tried.dependencies, tried.image
        outcome.dependency_image_digest = tried.digest
        outcome.duration = time.monotonic() - started
        if builds_stopped():
            outcome.status, outcome.reason, outcome.message = "skipped", "interrupted", "the run was interrupted"
            log.write("! interrupted\n")
            return outcome
        if failed:
            verdict = tried.verdict
            if verdict is None:
                assert last is not None  # failed without a verdict of ours: a step ended the build
                verdict = classify_failure(last, req.limits)
            outcome.status, outcome.reason, outcome.message = verdict
            log.write(f"! {outcome.status}: {outcome.reason}: {outcome.message}\n")
            return outcome
        outcome.collected = Path(tempfile.mkdtemp(prefix="asm-out-", dir=req.work_root))
        outcome.collected.chmod(0o755)  # readable (analysis may run as the build user), never writable by it
        try:
            got = collect_binaries(
                scratch_fd,
                "src",
                before,
                kinds=set(req.kinds),
                dest=outcome.collected,
                view=view,
                pdbs=bool(compilers.pdb),
            )
        except RefusedOutput as exc:  # the build replaced its own source folder by a link
            outcome.reason, outcome.message = "refused_output", f"src: {exc}"
            log.write(f"! refused: {outcome.message}\n")
            return outcome
        found, outcome.pdbs, outcome.refused = got.binaries, got.pdbs, got.refused
        for line in got.refused:
            log.write(f"! refused output (not stored): {line}\n")
        names = [r.split(": ", 1)[0] for r in got.refused]
        refusals = (
            (
                f"refused {len(names)} output file(s), not stored (links out of the build, special files or "
                f"files not the build's; see the log): {', '.join(names[:20])}" + (" ..." if len(names) > 20 else "")
            )
            if names
            else None
        )
        if not found:
            outcome.status, outcome.reason = "no_binaries", "no_binaries"
            outcome.message = "the build succeeded but left no binary of the kinds the recipe asks for"
            if refusals:
                outcome.message += f"; {refusals}"
            log.write(f"! {outcome.message}\n")
            return outcome
        if req.max_binaries is not None and len(found) > req.max_binaries:
            # none is kept: a build is stored whole or not at all, never cut at an arbitrary file
            outcome.reason = "too_many_binaries"
            outcome.message = (
                f"the build left {len(found)} binaries of the kinds the recipe asks for; "
                f"a build may leave at most {req.max_binaries} (setting max_binaries_per_build)"
            )
            log.write(f"! {outcome.message}\n")
            return outcome
        outcome.binaries = found
        outcome.message = refusals
        outcome.status = "succeeded"
        log.write(f"# {len(found)} binar{'y' if len(found) == 1 else 'ies'}: {', '.join(b.relpath for b in found)}\n")
        return outcome
    except OSError as exc:
        outcome.status, outcome.reason, outcome.message = (
            "failed",
            "build_environment",
            f"cannot prepare the build: {exc}",
        )
        log.write(f"! {outcome.message}\n")
        return outcome
    finally:
        os.close(scratch_fd)


_MISSING_DEP = re.compile(
    r"fatal error: [^:\n]+: No such file or directory"
    r"|Could NOT find \w+"
    r"|Package '[^']+'?,? (?:was )?not found|No package '[^']+' found"
    r"|Dependency \"?[^\s\"]+\"? not found"
    r"|cannot find -l\S+"
    r"|command not found|: not found$"
    r"|configure: error: .*(?:not found|required|missing|[Cc]annot find)",
    re.MULTILINE,
)
_LINK = re.compile(
    r"undefined reference to|ld returned \d+ exit status|linker command failed|multiple definition of|lld: error:"
)
_COMPILE = re.compile(r"\berror:|\berror [A-Z]+\d+:")
_OOM = re.compile(
    r"out of memory|Cannot allocate memory|std::bad_alloc|virtual memory exhausted|memory exhausted", re.I
)


def classify_failure(last: StepResult, limits: Limits) -> tuple[str, str, str]:
    """(status, reason class, one-line message) for the step that ended a build."""
    step: Step = last.step
    if last.timed_out:
        return "timed_out", "timeout", f"{step.name} still running after the {limits.timeout:.0f}s limit"
    if last.disk_exceeded:
        return "failed", "disk_limit", f"{step.name}: {last.tail[-1] if last.tail else 'past the disk limit'}"
    if last.signal == signal.SIGXFSZ:
        return "failed", "disk_limit", f"{step.name} wrote a file past the disk limit ({limits.file_size} bytes)"
    text = "\n".join(last.tail[-120:])
    first_error = (
        next((ln.strip() for ln in last.tail if _COMPILE.search(ln)), None)  # not a -Werror flag
        or next((ln.strip() for ln in last.tail if "error" in ln.lower()), None)
    )
    if last.returncode == 127 and not last.tail:
        return "failed", "missing_tool", f"cannot run {step.argv[0]!r}"
    if _OOM.search(text) or last.signal == 9:
        return "failed", "out_of_memory", first_error or f"{step.name} ran out of memory (limit {limits.memory} bytes)"
    if m := _MISSING_DEP.search(text):
        return "failed", "missing_dependency", m.group(0).strip()
    if step.phase == "configure":
        return "failed", "configure_failed", first_error or f"{step.name} exited with {last.returncode}"
    if _LINK.search(text) or step.phase == "link":
        return "failed", "link_error", first_error or f"{step.name} exited with {last.returncode}"
    if _COMPILE.search(text):
        return "failed", "compile_error", first_error or f"{step.name} exited with {last.returncode}"
    if last.signal:
        return "failed", "crashed", f"{step.name} killed by signal {last.signal}"
    return "failed", "build_failed", f"{step.name} exited with {last.returncode}"
