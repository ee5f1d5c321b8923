"""The Docker runner: run a build's steps in containers of a toolchain image.

Same contract as :class:`~assemblage.builds.runner.LocalRunner` (steps in order,
a deadline for the whole build, the full output in the log), with the
compilers of the image instead of the host's: each step is one container of
the image (``assemblage-linux:latest`` unless the recipe's ``build.image``
says otherwise; ``scripts/docker.sh image`` builds it) with

* the build's scratch folder bind-mounted at ``/build`` (the same path as the
  bubblewrap sandbox, so debug information does not depend on the runner),
  and its ``tmp`` folder at ``/tmp`` (counted in the disk limit), nothing else
  of the host;
* no network (``network_mode=none``), a read-only root file system with a
  private ``/tmp``, no capabilities, no new privileges, the unprivileged user
  ``nobody`` when the service runs as root;
* the recipe's memory cap as the container's memory limit (the kernel's OOM
  killer ends the step; reported as ``out_of_memory``), its process cap as the
  pids limit, its disk cap as the file-size limit and, for the whole build
  folder, the disk watcher of :class:`~assemblage.builds.runner.DiskWatch`;
* the argument list of the step as the container's command: no shell, so
  nothing from the repository is ever interpreted.

The containers are labelled ``assemblage.build`` and ``assemblage.owner``
(``<host>:<pid>`` of the process running the build) and removed after each
step; :func:`~assemblage.builds.runner.kill_all_builds` (Ctrl-C) kills the
running ones. A container does not outlive the process that runs it, even
one killed with SIGKILL: that process holds the container's standard input
open (an attached stream; the container is created with ``stdin_once``), and
the step runs under a small guard (:data:`GUARD`, our text, the step's
arguments only as ``"$@"``) that kills it as soon as that input closes; the
container's first process then exits and the kernel ends everything in it.
coreutils' ``timeout`` bounds each step as a last resort, and a runner
starting on this host removes the stopped containers of owners that are gone
(:func:`reap_orphans`). The docker SDK (``docker`` package) talks to the daemon.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from assemblage.builds.plan import LogSink, Step
from assemblage.builds.runner import (
    BUILD_GID,
    BUILD_UID,
    SANDBOX_ROOT,
    Limits,
    LocalRunner,
    StepExit,
    StepNotStarted,
    StepProcess,
    on_kill_all,
)
from assemblage.errors import BuildError

DEFAULT_IMAGE = "assemblage-linux:latest"
OWNER_LABEL = "assemblage.owner"

# The container's command is ``sh -c GUARD assemblage-guard <step argv...>``: the step runs with its own
# arguments ("$@", never a string made from them); when the standard input (held open by the process that
# runs the build) closes, the step is killed and the shell, the container's main process, exits.
GUARD = (
    "exec 3<&0\n"
    '"$@" </dev/null 3<&- &\n'
    "pid=$!\n"
    '{ cat <&3 >/dev/null 2>&1; kill -KILL "$pid" 2>/dev/null; } &\n'
    "exec 3<&-\n"
    'wait "$pid"\n'
)


def owner() -> str:
    """This process, as the ``assemblage.owner`` label names it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def reap_orphans() -> int:
    """Remove the build containers of this host whose owner process is gone; returns how many."""
    host = socket.gethostname()
    removed = 0
    try:
        found = _client().containers.list(all=True, filters={"label": OWNER_LABEL})
    except Exception:  # noqa: BLE001 - reaping is best effort
        return 0
    for c in found:
        name_host, _, pid = (c.labels.get(OWNER_LABEL) or "").rpartition(":")
        if name_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            c.remove(force=True)
            removed += 1
        except Exception:  # noqa: BLE001 - removed meanwhile
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_live: set[Any] = set()
_live_lock = threading.Lock()


def _kill_live() -> int:
    with _live_lock:
        containers = list(_live)
    for c in containers:
        try:
            c.kill()
        except Exception:  # noqa: BLE001 - it may have ended on its own
            pass
    return len(containers)


on_kill_all(_kill_live)


@functools.cache
def _client() -> Any:
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - the service extra is missing
        raise BuildError("the docker runner needs the docker package: pip install 'assemblage[service]'") from exc
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise BuildError(
            f"the docker runner cannot reach the Docker daemon at {host}: {exc} (start it: scripts/docker.sh start)"
        ) from exc
    return client


def check_image(image: str) -> None:
    """Refuse early, with the fix in the message, when the daemon or the image is missing."""
    import docker.errors

    try:
        _client().images.get(image)
    except docker.errors.ImageNotFound:
        raise BuildError(
            f"the docker runner's image {image!r} does not exist here (build it: scripts/docker.sh image)"
        ) from None
    except docker.errors.APIError as exc:
        raise BuildError(f"the Docker daemon refused to describe the image {image!r}: {exc}") from exc


@functools.lru_cache(maxsize=512)
def _which_in(image: str, name: str) -> str | None:
    if "/" in name:
        return name
    out = _client().containers.run(
        image, ["sh", "-c", 'command -v "$1" || true', "which", name], remove=True, network_mode="none", entrypoint=[]
    )
    path = out.decode("utf-8", "replace").strip()
    return path or None


def _image_ref(image: str) -> dict:
    found = _client().images.get(image)
    digests = found.attrs.get("RepoDigests") or []
    return {"name": image, "id": found.id, "digest": digests[0] if digests else None}


class DockerRunner(LocalRunner):
    """Runs the steps of one build in containers of ``image`` (the step loop and environment are the local runner's)."""

    name = "docker"

    def __init__(self, limits: Limits, *, image: str = DEFAULT_IMAGE) -> None:
        super().__init__(limits, sandbox=True)  # the container is the isolation
        self.image = image
        check_image(image)
        reap_orphans()

    @property
    def isolation(self) -> str:
        return "docker"

    @property
    def where(self) -> str:
        return f"in the image {self.image}"

    def which(self, name: str) -> str | None:
        """Where ``name`` is on the image's PATH (compilers are looked up in the image, not here)."""
        return _which_in(self.image, name)

    def install_hint(self, toolchain: str) -> str:
        return "add its packages to the image's TOOLCHAINS build argument"

    # -- reproducibility (assemblage.builds.reproducible)

    def query(self, argv: list[str], *, timeout: float = 120) -> str:
        """The output of a command of ours run in a container of the image (no network), for probing."""
        import docker.errors

        try:
            out = _client().containers.run(
                self.image, argv, remove=True, network_mode="none", entrypoint=[], environment={"LC_ALL": "C.UTF-8"}
            )
        except docker.errors.DockerException as exc:
            raise BuildError(f"cannot query the image {self.image!r}: {exc}") from exc
        return out.decode("utf-8", "replace")

    def image_ref(self) -> dict | None:
        """The image's name, id (the digest of its configuration) and registry digest when it has one."""
        return _image_ref(self.image)

    def _user(self) -> str:
        return f"{BUILD_UID}:{BUILD_GID}" if os.geteuid() == 0 else f"{os.getuid()}:{os.getgid()}"

    def sandbox_note(self) -> str:
        return f"docker image {self.image} (no network, read-only system, memory limit)"

    def _start(self, step: Step, scratch: Path, src_rel: str, env: dict[str, str], timeout: float) -> StepProcess:
        """Start ``step`` in a container of the image (the step's framing is the local runner's)."""
        import docker.errors
        from docker.types import Ulimit

        cwd = os.path.normpath(f"{SANDBOX_ROOT}/{src_rel}/{step.cwd}")
        try:
            # coreutils' timeout as PID 1 is a second deadline: if this process dies (kill -9),
            # the container still ends shortly after the build's own time limit
            deadline = ["timeout", "--signal=KILL", f"{int(timeout) + 30}s"]
            (scratch / "tmp").mkdir(exist_ok=True)
            api = _client().api
            host_config = api.create_host_config(
                network_mode="none",
                read_only=True,
                binds={
                    str(scratch): {"bind": SANDBOX_ROOT, "mode": "rw"},
                    str(scratch / "tmp"): {"bind": "/tmp", "mode": "rw"},
                },
                mem_limit=self.limits.memory,
                memswap_limit=self.limits.memory,
                pids_limit=self.limits.processes,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                ulimits=[
                    Ulimit(name="fsize", soft=self.limits.file_size, hard=self.limits.file_size),
                    Ulimit(name="core", soft=0, hard=0),
                ],
            )
            # the low-level call: stdin_open without detach sets StdinOnce (stdin closes when our stream does)
            created = api.create_container(
                self.image,
                [*deadline, "sh", "-c", GUARD, "assemblage-guard", *step.argv],
                entrypoint=[],
                working_dir=cwd,
                environment=env,
                stdin_open=True,
                detach=False,
                user=self._user(),
                host_config=host_config,
                labels={"assemblage.build": "1", OWNER_LABEL: owner()},
                hostname="assemblage-build",
            )
            container = _client().containers.get(created["Id"])
        except docker.errors.APIError as exc:
            raise StepNotStarted(f"the Docker daemon refused the step: {exc}", str(exc)) from None
        step_container = _Container(container)
        with _live_lock:
            _live.add(container)
        try:
            # the lifeline: the container's standard input, open as long as this process lives
            step_container.lifeline = container.attach_socket(params={"stdin": 1, "stream": 1})
            container.start()
        except BaseException:
            step_container.close(None)
            raise
        return step_container


class _Container:
    """A step's container: its output, its end, and its removal."""

    def __init__(self, container: Any) -> None:
        self.container = container
        self.lifeline: Any = None

    def pump(self, log: LogSink, tail: list[str]) -> None:
        pending = ""
        for chunk in self.container.logs(stream=True, follow=True):
            text = pending + chunk.decode("utf-8", "replace")
            *lines, pending = text.split("\n")
            for line in lines:
                log.write(line + "\n")
                tail.append(line)
            if len(tail) > 200:
                del tail[:100]
        if pending:
            log.write(pending + "\n")
            tail.append(pending)

    def wait(self, timeout: float) -> StepExit | None:
        import requests.exceptions

        try:
            status = self.container.wait(timeout=max(timeout, 1.0))
        except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout):
            return None
        rc = int(status.get("StatusCode", 1))
        self.container.reload()
        oom = bool(self.container.attrs.get("State", {}).get("OOMKilled"))
        return StepExit(returncode=rc, signal=rc - 128 if rc > 128 else None, out_of_memory=oom)

    def kill(self) -> None:
        self.container.kill()

    def close(self, log: LogSink | None) -> None:
        _close(self.lifeline)
        with _live_lock:
            _live.discard(self.container)
        _remove(self.container, log)


def _close(sock: Any) -> None:
    if sock is None:
        return
    for target in (getattr(sock, "_sock", None), sock):
        try:
            if target is not None:
                target.close()
        except Exception:  # noqa: BLE001 - already closed
            pass


def _remove(container: Any, log: LogSink | None, attempts: int = 6) -> None:
    """Remove a step's container, trying again while the daemon is busy with it.

    Under load the daemon can refuse a forced removal for a moment ("removal already
    in progress", an overlay file system still busy), which left containers behind.
    """
    import docker.errors
    import requests.exceptions

    for i in range(attempts):
        try:
            container.remove(force=True)
            return
        except docker.errors.NotFound:
            return
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            if i == attempts - 1:
                if log is not None:
                    log.write(f"! could not remove the step's container {container.short_id}: {exc}\n")
                return
            time.sleep(0.5 * (i + 1))
