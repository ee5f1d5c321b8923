"""Installing a build's dependencies before it runs, never from inside its sandbox.

The packages come from two places: a Debian source's ``Build-Depends`` (and
``Build-Depends-Arch``), resolved against apt's package lists
(:mod:`assemblage.builds.aptindex`), and what a failed build's log says it
lacked (:mod:`assemblage.builds.needs`, through Debian's Contents index). How
they get installed depends on the runner:

* **docker**: a derived image per dependency set, ``FROM`` the toolchain image
  (by image id), the packages installed by ``apt-get`` with network *while the
  image is built*, tagged ``assemblage-deps:<hash>`` where the hash covers the
  base image id and the sorted package list, so the second build that needs
  the same set finds the image and builds nothing. The build's steps then run
  in containers of the derived image exactly as before: no network, read-only
  system, the build user. The image id (a content digest) is recorded on the
  build (``builds.dependency_image_digest``) for the run's lock.
* **local**: the packages are installed on the host with ``apt-get`` only when
  ``ASSEMBLAGE_INSTALL_DEPENDENCIES=1`` (``assemblage build
  --install-dependencies`` sets it) and Assemblage runs as root; otherwise the
  build fails as ``missing_dependency`` with a message naming the packages.

Packages the environment already has (``dpkg-query`` on the host, or inside
the toolchain image once per image id) are not added: ``builds.dependencies``
lists only what was added for the build.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from assemblage import _spawn
from assemblage.builds.plan import LogSink
from assemblage.errors import BuildError

__all__ = ["DEPS_REPOSITORY", "INSTALL_SETTING", "ProvisionResult", "Provisioner", "install_allowed"]

INSTALL_SETTING = "ASSEMBLAGE_INSTALL_DEPENDENCIES"
DEPS_REPOSITORY = "assemblage-deps"
_PKG = re.compile(r"^[a-z0-9][a-z0-9+.\-]+(?::[a-z0-9]+)?$")


def install_allowed() -> bool:
    """Whether the local runner may install packages on this machine (the setting, and root)."""
    from assemblage.settings import read_setting

    return bool(read_setting("install_dependencies", False))


def _check_names(packages: list[str]) -> list[str]:
    bad = [p for p in packages if not _PKG.match(p)]
    if bad:  # names come from our own resolution against the archive; anything else is a bug
        raise BuildError(f"refusing to install oddly named packages: {', '.join(bad)}")
    return sorted(set(packages))


@dataclass(kw_only=True)
class ProvisionResult:
    ok: bool
    added: list[str] = field(default_factory=list)  # packages installed beyond the environment
    image: str | None = None  # docker: the derived image's tag
    digest: str | None = None  # docker: its image id (sha256:...)
    message: str | None = None  # why not


class Provisioner:
    """Brings one build's environment to a set of packages (for the runner it was made for)."""

    def __init__(self, runner_name: str, *, image: str | None = None, foreign_arch: str | None = None) -> None:
        self.runner_name = runner_name
        self.base_image = image
        self.foreign_arch = foreign_arch  # a Debian arch to enable (dpkg --add-architecture) for cross deps

    def installed(self) -> frozenset[str]:
        if self.runner_name == "docker":
            return _image_packages(_image_id(self.base_image))
        return _host_packages()

    def missing(self, packages: list[str]) -> list[str]:
        have = self.installed()
        return [p for p in _check_names(packages) if p not in have]

    def provision(self, packages: list[str], log: LogSink) -> ProvisionResult:
        """Make ``packages`` available to the build; ``ok=False`` with a message when it cannot."""
        need = self.missing(packages)
        if not need:
            return ProvisionResult(ok=True, image=None)
        if self.runner_name == "docker":
            tag, digest = dependency_image(self.base_image, need, log, foreign_arch=self.foreign_arch)
            return ProvisionResult(ok=True, added=need, image=tag, digest=digest)
        if not install_allowed():
            cmd = "apt-get install " + " ".join(need)
            return ProvisionResult(
                ok=False,
                added=need,
                message=(
                    f"needs Debian packages not installed here: {', '.join(need)} "
                    f"(run: {cmd}; or let Assemblage install them: {INSTALL_SETTING}=1 or "
                    "assemblage build --install-dependencies)"
                ),
            )
        if os.geteuid() != 0:
            return ProvisionResult(
                ok=False,
                added=need,
                message=(
                    f"needs Debian packages not installed here: {', '.join(need)}; "
                    f"{INSTALL_SETTING}=1 installs them only when Assemblage runs as root"
                ),
            )
        _host_install(need, log, foreign_arch=self.foreign_arch)
        _host_packages.cache_clear()
        still = self.missing(need)
        if still:
            return ProvisionResult(ok=False, added=need, message=f"apt-get did not install {', '.join(still)}")
        return ProvisionResult(ok=True, added=need)


_NATIVE = "amd64"


# ----------------------------------------------------------------- local


@functools.cache
def _host_packages() -> frozenset[str]:
    r = _spawn.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Architecture} ${db:Status-Status}\n"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return _package_set(r.stdout)


def _package_set(text: str) -> frozenset[str]:
    out = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "installed":
            name, arch = parts[0], parts[1]
            if arch in ("all", _NATIVE):
                out.add(name)
            out.add(f"{name}:{arch}")
    return frozenset(out)


_host_lock = threading.Lock()


def _host_install(packages: list[str], log: LogSink, *, foreign_arch: str | None) -> None:
    # apt and the packages' maintainer scripts get what apt needs (a proxy, if any), never the worker's secrets
    kept = ("PATH", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY")
    env = {**{k: os.environ[k] for k in kept if k in os.environ}, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    cmds = []
    if foreign_arch:
        cmds.append(["dpkg", "--add-architecture", foreign_arch])
        cmds.append(["apt-get", "update", "-q"])
    cmds.append(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600", "--", *packages]
    )
    with _host_lock:
        for argv in cmds:
            log.write(f"\n# installing dependencies on this machine: {' '.join(argv)}\n")
            log.flush()
            r = _spawn.run(argv, capture_output=True, text=True, timeout=3600, env=env)
            log.write(r.stdout[-20_000:] + r.stderr[-5_000:])
            if r.returncode != 0:
                raise BuildError(f"apt-get could not install {' '.join(packages)}: {r.stderr.strip()[-500:]}")


# ----------------------------------------------------------------- docker


@functools.cache
def _docker() -> Any:
    import docker

    try:
        client = docker.from_env(timeout=3600)
        client.ping()
    except Exception as exc:
        raise BuildError(f"cannot reach the Docker daemon for a dependency image: {exc}") from exc
    return client


def _image_id(image: str | None) -> str:
    import docker.errors

    if not image:
        raise BuildError("the docker runner has no image")
    try:
        return _docker().images.get(image).id
    except docker.errors.ImageNotFound:
        raise BuildError(f"the image {image!r} does not exist here (build it: scripts/docker.sh image)") from None


@functools.lru_cache(maxsize=64)
def _image_packages(image_id: str) -> frozenset[str]:
    out = _docker().containers.run(
        image_id,
        ["dpkg-query", "-W", "-f", "${Package} ${Architecture} ${db:Status-Status}\n"],
        remove=True,
        network_mode="none",
        entrypoint=[],
        user="0:0",
    )
    return _package_set(out.decode("utf-8", "replace"))


def image_tag(base_id: str, packages: list[str], foreign_arch: str | None = None) -> str:
    """``assemblage-deps:<hash>`` of the base image id and the sorted package list."""
    doc = json.dumps({"base": base_id, "packages": sorted(set(packages)), "arch": foreign_arch}, sort_keys=True)
    return f"{DEPS_REPOSITORY}:{hashlib.sha256(doc.encode()).hexdigest()[:20]}"


_image_locks: dict[str, threading.Lock] = {}
_image_locks_guard = threading.Lock()


def _apt_sources() -> str:
    """This machine's Debian mirrors as a deb822 file, so the image installs what the host's lists offer."""
    from assemblage.sources.debian import render_deb822, system_deb_src_entries

    return render_deb822(system_deb_src_entries(), types="deb")


def dependency_image(
    base: str | None, packages: list[str], log: LogSink, *, foreign_arch: str | None = None
) -> tuple[str, str]:
    """(tag, image id) of the base image plus ``packages``: found, or built once.

    Another process may rebuild the toolchain image (``scripts/docker.sh image``
    retags and prunes) between our lookup of its id and our build: seen once in
    60 packages here as "No such image"; the lookup and the build are tried once more.
    """
    try:
        return _dependency_image(base, packages, log, foreign_arch=foreign_arch)
    except BuildError as exc:
        if "No such image" not in str(exc):
            raise
        log.write(f"# the toolchain image changed under us ({exc}); once more\n")
        return _dependency_image(base, packages, log, foreign_arch=foreign_arch)


def _dependency_image(
    base: str | None, packages: list[str], log: LogSink, *, foreign_arch: str | None = None
) -> tuple[str, str]:
    import docker.errors

    packages = _check_names(packages)
    base_id = _image_id(base)
    tag = image_tag(base_id, packages, foreign_arch)
    with _image_locks_guard:
        lock = _image_locks.setdefault(tag, threading.Lock())
    with lock, _file_lock(tag):
        try:
            found = _docker().images.get(tag)
            log.write(f"# dependency image {tag} ({found.id}) reused: {' '.join(packages)}\n")
            return tag, found.id
        except docker.errors.ImageNotFound:
            pass
        user = _docker().images.get(base_id).attrs.get("Config", {}).get("User") or "root"
        script = (
            "set -e; "
            + ('dpkg --add-architecture "$ARCH"; ' if foreign_arch else "")
            + 'apt-get update -q; apt-get install -y -q --no-install-recommends -- "$@"; '
            "rm -rf /var/lib/apt/lists/*"
        )
        dockerfile = "\n".join(
            [
                f"FROM {base_id}",
                "USER root",
                "COPY host.sources /etc/apt/sources.list.d/assemblage-host.sources",
                f"ENV DEBIAN_FRONTEND=noninteractive ARCH={foreign_arch or ''}",
                "RUN " + json.dumps(["sh", "-c", script, "install-deps", *packages]),
                "HEALTHCHECK NONE",  # the toolchain image's service health check means nothing in a build
                f"USER {user}",
                "LABEL "
                + " ".join(
                    f"{k}={json.dumps(v)}"
                    for k, v in (("assemblage.dependencies", " ".join(packages)), ("assemblage.base", base_id))
                ),
                "",
            ]
        )
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            for name, text in (("Dockerfile", dockerfile), ("host.sources", _apt_sources())):
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))
        context.seek(0)
        log.write(f"\n# building dependency image {tag} FROM {base} ({base_id}): {' '.join(packages)}\n")
        log.flush()
        started = time.monotonic()
        tail: list[str] = []
        try:
            for chunk in _docker().api.build(
                fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True, decode=True, pull=False
            ):
                if "stream" in chunk:
                    text = chunk["stream"]
                    log.write(text)
                    tail = (tail + text.splitlines())[-20:]
                if "error" in chunk:
                    raise BuildError(
                        f"the dependency image for {' '.join(packages)} failed to build: "
                        f"{chunk['error'].strip()} ({' / '.join(tail[-3:])})"
                    )
        except docker.errors.APIError as exc:
            raise BuildError(f"the Docker daemon refused the dependency image: {exc}") from exc
        image = _docker().images.get(tag)
        log.write(f"# dependency image {tag} ({image.id}) built in {time.monotonic() - started:.0f}s\n")
        return tag, image.id


class _file_lock:
    """Across processes on this machine: one build of one dependency image at a time."""

    def __init__(self, tag: str) -> None:
        folder = Path(tempfile.gettempdir()) / "assemblage-deps-locks"
        folder.mkdir(exist_ok=True)
        self.path = folder / (tag.replace(":", "_") + ".lock")
        self.fh: IO[bytes] | None = None

    def __enter__(self) -> None:
        import fcntl

        self.fh = open(self.path, "a+b")
        fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        assert self.fh is not None
        self.fh.close()
