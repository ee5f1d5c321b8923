"""Git sources: resolve a branch, tag or commit to a SHA and export that commit's tree, once.

Layout under ``CACHE/git``: ``mirrors/NAME-KEY.git`` is a bare repository per
URL that accumulates the commits we asked for (a depth-1 fetch of the exact
commit, or a full fetch when the server refuses that); ``trees/NAME-SHA`` is
the exported tree of one commit, without a ``.git`` folder, shared by every
configuration. The ref is resolved with ``git ls-remote`` first, so a commit
already in the cache costs one round trip, and a spec seen before (same URL
and ref) none at all.

Everything handed to git from a recipe goes after ``--`` or is a SHA we
checked; refs starting with ``-`` are refused. Hooks are disabled, the
terminal prompt is off, the ``ext::`` transport is refused, Git LFS smudging is
skipped and submodules are not fetched unless asked for. A :class:`FetchPolicy`
decides which local repositories (inside the service's source root) and which
addresses (public ones) git may read; see :mod:`assemblage.sources.policy` for how
git's own connections are pinned to the addresses it checked.
"""

from __future__ import annotations

import re
import shutil
import urllib.parse
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from assemblage.errors import SourceError
from assemblage.recipes.models import GitSource
from assemblage.sources._util import (
    StepTimeout,
    key_digest,
    locked,
    publish,
    read_index,
    run,
    safe_name,
    temp_dir,
    write_index,
)
from assemblage.sources.fetched import FetchedSource, parse_date, subdir
from assemblage.sources.kinds import FetchJob, SourceKind, register
from assemblage.sources.licenses import detect_license
from assemblage.sources.policy import DEFAULT_PORTS, FetchPolicy
from assemblage.urls import GIT_SCHEMES, check_url, file_url_path, is_file_url, redact

__all__ = ["GIT_ENV", "GitKind", "MAX_SUBMODULE_DEPTH", "fetch_git", "git_name", "is_remote", "submodule_url"]

GIT_ENV: dict[str, str | None] = {
    # variables a caller (e.g. a git hook running us) may have set, which would redirect our commands
    "GIT_DIR": None,
    "GIT_WORK_TREE": None,
    "GIT_INDEX_FILE": None,
    "GIT_OBJECT_DIRECTORY": None,
    "GIT_ALTERNATE_OBJECT_DIRECTORIES": None,
    "GIT_NAMESPACE": None,
    "GIT_CEILING_DIRECTORIES": None,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
    "GIT_LFS_SKIP_SMUDGE": "1",
    "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
    "LC_ALL": "C",
}
_GIT_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "protocol.ext.allow=never",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "submodule.recurse=false",
    "-c",
    "core.symlinks=true",
    "-c",
    "core.autocrlf=false",
    "-c",
    "advice.detachedHead=false",
)
_SCHEMES = GIT_SCHEMES
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._~-]+@[A-Za-z0-9.-]+:")
_HELPER = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")  # git's <transport>::<address> remote-helper syntax
_HEX = re.compile(r"^[0-9a-fA-F]{7,40}$")
_SHA = re.compile(r"^[0-9a-f]{40}$")


def is_remote(ref: str) -> bool:
    """A URL (``https://``, ``ssh://``...) or ``user@host:path``, as opposed to a local path."""
    return "://" in ref or bool(_SCP_LIKE.match(ref) or _HELPER.match(ref))


def git_name(ref: str) -> str:
    """``https://github.com/madler/zlib.git`` -> ``zlib``; ``../repos/foo/`` -> ``foo``."""
    tail = ref.rstrip("/").replace("\\", "/")
    tail = tail.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    tail = tail.removesuffix(".git")
    return tail


def _git(
    *args: str,
    what: str,
    timeout: float,
    git_dir: Path | None = None,
    env: Mapping[str, str | None] | None = None,
    check: bool = True,
    opts: tuple[str, ...] = (),
):
    cmd = ["git", *_GIT_CONFIG, *opts]
    if git_dir is not None:
        cmd.append(f"--git-dir={git_dir}")
    cmd.extend(args)
    return run(cmd, what=what, timeout=timeout, env={**GIT_ENV, **(env or {})}, check=check)


def _check_url(url: str) -> None:
    shown = redact(url)
    if url.startswith("-"):
        raise SourceError(f"{shown!r}: a git URL cannot start with '-'")
    if _HELPER.match(url):
        raise SourceError(f"{shown}: unsupported git transport {url.split('::', 1)[0]!r} (remote helpers are refused)")
    if "://" in url:
        try:
            check_url(url, _SCHEMES)  # a submodule's URL comes from the repository, not from a checked recipe
        except ValueError as exc:
            raise SourceError(str(exc)) from None


class _Remote:
    """What git is given for one repository: the URL, pinning options and environment (see ``FetchPolicy``).

    Failures of a restricted fetch are explained without git's own words for
    network trouble, which told a refused port from a silent one from a server that
    is not git: all of those read "no usable git answer from HOST:PORT".
    """

    def __init__(self, url: str, label: str, policy: FetchPolicy) -> None:
        self.url, self.label, self.policy = url, label, policy
        self.restricted = policy.restricts_network and is_remote(url)
        if is_remote(url):
            self.given, self.opts, self.env = policy.git_remote(url)
        else:
            self.given, self.opts, self.env = url, (), {"GIT_ALLOW_PROTOCOL": "file"} if policy.source_root else {}

    @property
    def where(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        try:
            port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
        except ValueError:
            port = None
        return f"{parts.hostname}:{port}" if parts.hostname else redact(self.url)

    def git(self, *args: str, what: str, timeout: float, git_dir: Path | None = None, check: bool = True):
        try:
            done = _git(*args, what=what, timeout=timeout, git_dir=git_dir, env=self.env, check=False, opts=self.opts)
        except StepTimeout:
            if self.restricted:
                raise SourceError(f"{what} failed: no usable git answer from {self.where}") from None
            raise
        if check and done.returncode != 0:
            raise SourceError(f"{what} failed: {self.explain(done.stderr or done.stdout or '')}")
        return done

    def explain(self, output: str) -> str:
        if not self.restricted:
            text = redact(output.strip())
            return (text if len(text) <= 2000 else "..." + text[-2000:]) or "git failed"
        http = re.search(r"returned error: (\d{3})", output)
        if http:
            code = http.group(1)
            if code.startswith("3"):
                return f"{self.where} answered with a redirect (HTTP {code}); redirects are not followed"
            return f"{self.where} answered HTTP {code}"
        if re.search(r"(?i)redirect", output):
            return f"{self.where} answered with a redirect; redirects are not followed"
        if re.search(
            r"(?i)repository .*not found|not a git repository|does not appear to be a git repository"
            r"|repository not exported",
            output,
        ):
            return f"no git repository there ({self.where})"
        if re.search(r"(?i)authentication failed|could not read (username|password)|terminal prompts disabled", output):
            return f"{self.where} wants credentials, or refused the ones given"
        return f"no usable git answer from {self.where}"


def _ls_remote(remote: _Remote, timeout: float) -> tuple[dict[str, str], str | None]:
    """Advertised refs (name -> SHA, peeled tags as ``refs/tags/X^{}``) and HEAD's branch."""
    out = remote.git(
        "ls-remote", "--symref", "--", remote.given, what=f"git ls-remote {remote.label}", timeout=timeout
    ).stdout
    refs: dict[str, str] = {}
    head_branch = None
    for line in out.splitlines():
        left, _, name = line.partition("\t")
        if left.startswith("ref: "):
            if name == "HEAD":
                head_branch = left[5:].strip()
            continue
        if _SHA.match(left):
            refs[name] = left
    return refs, head_branch


def _resolve(ref: str | None, refs: dict[str, str], label: str) -> tuple[str | None, str | None]:
    """(SHA or None when it must be looked up after a full fetch, tag name if the ref is a tag)."""
    if ref is None:
        if "HEAD" not in refs:
            raise SourceError(f"{label}: the repository has no HEAD (is it empty?)")
        return refs["HEAD"], None
    if ref.startswith("-"):
        raise SourceError(f"{label}: not a valid git ref: {ref!r}")
    if ref.startswith("refs/"):
        if f"{ref}^{{}}" in refs:
            return refs[f"{ref}^{{}}"], ref.rsplit("/", 1)[-1] if ref.startswith("refs/tags/") else None
        if ref in refs:
            return refs[ref], ref.rsplit("/", 1)[-1] if ref.startswith("refs/tags/") else None
    for candidate in (f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}"):
        if candidate in refs:
            return refs[candidate], ref
    if f"refs/heads/{ref}" in refs:
        return refs[f"refs/heads/{ref}"], None
    if _HEX.match(ref):
        low = ref.lower()
        if len(low) == 40:
            return low, None
        matches = {sha for sha in refs.values() if sha.startswith(low)}
        if len(matches) == 1:
            return matches.pop(), None
        return None, None
    branches = sorted(r[len("refs/heads/") :] for r in refs if r.startswith("refs/heads/"))
    tags = sorted(r[len("refs/tags/") :] for r in refs if r.startswith("refs/tags/") and not r.endswith("^{}"))
    raise SourceError(
        f"{label}: no branch, tag or commit named {ref!r} "
        f"(branches: {', '.join(branches[:10]) or 'none'}; tags: {', '.join(tags[-10:]) or 'none'})"
    )


def _has_commit(mirror: Path, sha: str, timeout: float) -> bool:
    probe = _git(
        "cat-file", "-e", f"{sha}^{{commit}}", git_dir=mirror, what="git cat-file", timeout=timeout, check=False
    )
    return probe.returncode == 0


def _fetch_into(mirror: Path, remote: _Remote, sha: str | None, ref: str | None, timeout: float) -> str:
    """Make the commit available in ``mirror``; returns its full SHA."""
    label = remote.label
    if not (mirror / "HEAD").exists():
        mirror.parent.mkdir(parents=True, exist_ok=True)
        _git("init", "--bare", "--quiet", "--", str(mirror), what="git init", timeout=timeout)
    if sha and _has_commit(mirror, sha, timeout):
        return sha
    if sha:
        shallow = remote.git(
            "fetch",
            "--quiet",
            "--no-tags",
            "--depth=1",
            "--",
            remote.given,
            sha,
            git_dir=mirror,
            what=f"git fetch {label}",
            timeout=timeout,
            check=False,
        )
        if shallow.returncode == 0 and _has_commit(mirror, sha, timeout):
            return sha
    # the server would not hand out one commit by SHA, or the ref was an abbreviated SHA: fetch everything
    full = ["fetch", "--quiet", "--tags", "--force"]
    if (mirror / "shallow").exists():
        full.append("--unshallow")
    remote.git(
        *full,
        "--",
        remote.given,
        "+refs/heads/*:refs/heads/*",
        git_dir=mirror,
        what=f"git fetch {label}",
        timeout=timeout,
    )
    wanted = sha or ref
    assert wanted is not None
    found = _git(
        "rev-parse",
        "--verify",
        "--quiet",
        "--end-of-options",
        f"{wanted}^{{commit}}",
        git_dir=mirror,
        what="git rev-parse",
        timeout=timeout,
        check=False,
    )
    if found.returncode != 0:
        raise SourceError(f"{label}: commit {wanted!r} is not in the repository")
    return found.stdout.strip()


def _export(mirror: Path, sha: str, trees: Path, name: str, timeout: float) -> Path:
    final = trees / f"{name}-{sha[:16]}"
    if final.is_dir():
        return final
    with temp_dir(trees) as tmp:
        tree = tmp / "tree"
        tree.mkdir()
        env = {"GIT_INDEX_FILE": str(tmp / "index")}
        _git(f"--work-tree={tree}", "read-tree", sha, git_dir=mirror, env=env, what="git read-tree", timeout=timeout)
        _git(
            f"--work-tree={tree}",
            "checkout-index",
            "--all",
            "--force",
            git_dir=mirror,
            env=env,
            what="git checkout-index",
            timeout=timeout,
        )
        return publish(tree, final)


def _commit_date(mirror: Path, sha: str, timeout: float) -> str | None:
    out = _git("log", "-1", "--format=%cI", sha, git_dir=mirror, what="git log", timeout=timeout, check=False)
    text = out.stdout.strip()
    try:
        return datetime.fromisoformat(text).isoformat() if text else None
    except ValueError:
        return None


def _tag_at(refs: dict[str, str], sha: str) -> str | None:
    tags = set()
    for name, value in refs.items():
        if value == sha and name.startswith("refs/tags/"):
            tags.add(name[len("refs/tags/") :].removesuffix("^{}"))
    return min(tags) if tags else None


def fetch_git(
    url: str,
    ref: str | None,
    *,
    label: str,
    name: str,
    cache: Path,
    timeout: float,
    submodules: bool = False,
    policy: FetchPolicy | None = None,
    _depth: int = 0,
) -> dict:
    """Fetch ``url`` at ``ref`` into ``cache/git``; return the index record (path, commit, version...).

    ``url`` is what git is given (a URL or an absolute local path). With
    ``submodules``, each submodule is fetched at the commit the tree records
    (recursively, :data:`MAX_SUBMODULE_DEPTH` levels) and copied in. ``policy``
    (default: unrestricted) says which local repositories and which addresses
    may be read; submodules are held to it too.
    """
    policy = policy or FetchPolicy.unrestricted()
    _check_url(url)
    if ref is not None and (not ref or ref.startswith("-")):
        raise SourceError(f"{label}: not a valid git ref: {ref!r}")
    if is_file_url(url):
        try:
            url = file_url_path(url)
        except ValueError as exc:
            raise SourceError(f"{label}: {exc}") from None
    local = None
    if not is_remote(url):
        local = policy.local(url, Path("/"))  # refuses a path outside the source root, before the cache is asked
        url = str(local)
    root = cache / "git"
    root.mkdir(parents=True, exist_ok=True)
    spec_key = key_digest("git", url, ref or "", "submodules" if submodules else "")
    hit = read_index(root, spec_key)
    if hit:
        return hit
    if local is not None:
        if not local.exists():
            raise SourceError(f"{label}: no such repository ({local})")
        policy.check_repository(local)
    remote = _Remote(url, label, policy)
    refs, _head = _ls_remote(remote, timeout)
    sha, tag = _resolve(ref, refs, label)
    mirror = root / "mirrors" / f"{name}-{key_digest(url)[:16]}.git"
    with locked(root / "locks" / f"{mirror.name}.lock"):
        sha = _fetch_into(mirror, remote, sha, ref, timeout)
        tree = _export(mirror, sha, root / "trees", name, timeout)
        record: dict[str, object] = {
            "path": f"trees/{tree.name}",
            "commit": sha,
            "version": tag or _tag_at(refs, sha),
            "last_update": _commit_date(mirror, sha, timeout),
        }
    if submodules:
        tree, pinned = _with_submodules(
            mirror,
            sha,
            tree,
            url=url,
            label=label,
            name=name,
            cache=cache,
            timeout=timeout,
            depth=_depth,
            policy=policy,
        )
        record["path"] = f"trees/{tree.name}"
        record["submodules"] = pinned
    write_index(root, spec_key, record)
    return record


# ---------------------------------------------------------------- submodules

MAX_SUBMODULE_DEPTH = 3


def submodule_url(parent: str, url: str) -> str:
    """A ``.gitmodules`` URL made absolute: ``./x`` and ``../x`` are relative to the parent's URL."""
    if not url.startswith(("./", "../")):
        return url
    base = parent.rstrip("/")
    floor = base.index("://") + 3 if "://" in base else 0  # never cut into the scheme
    rel = url
    while rel.startswith(("./", "../")):
        if rel.startswith("./"):
            rel = rel[2:]
            continue
        rel = rel[3:]
        slash = base.rfind("/")
        colon = base.rfind(":") if _SCP_LIKE.match(base) else -1
        if base.endswith(":") or max(slash, colon) <= floor:
            raise SourceError(f"relative submodule URL {url!r} climbs above {parent!r}")
        base = base[: colon + 1] if colon > slash else base[:slash]
    return f"{base}{rel}" if base.endswith(":") else f"{base}/{rel}"


def _check_submodule_url(parent: str, url: str, label: str) -> None:
    _check_url(url)
    if is_remote(parent) and (not is_remote(url) or url.lower().startswith("file:")):
        # a remote repository must not pull files of this machine into the corpus
        raise SourceError(f"{label}: submodule URL {redact(url)!r} of a remote repository points at this machine")


def _gitlinks(mirror: Path, sha: str, timeout: float) -> list[tuple[str, str]]:
    out = _git("ls-tree", "-r", "-z", "--full-tree", sha, git_dir=mirror, what="git ls-tree", timeout=timeout).stdout
    links = []
    for entry in out.split("\0"):
        meta, _, path = entry.partition("\t")
        bits = meta.split()
        if len(bits) == 3 and bits[0] == "160000" and bits[1] == "commit" and _SHA.match(bits[2]):
            links.append((path, bits[2]))
    return links


def _gitmodules(mirror: Path, sha: str, scratch: Path, timeout: float) -> dict[str, str]:
    """path -> url from the commit's ``.gitmodules`` (read from git's objects, never from the tree)."""
    blob = _git(
        "cat-file",
        "blob",
        f"{sha}:.gitmodules",
        git_dir=mirror,
        what="git cat-file .gitmodules",
        timeout=timeout,
        check=False,
    )
    if blob.returncode != 0:
        return {}
    config = scratch / "gitmodules"
    config.write_text(blob.stdout, encoding="utf-8")
    listed = _git(
        "config", "--file", str(config), "--null", "--list", what="git config .gitmodules", timeout=timeout, check=False
    ).stdout
    paths: dict[str, str] = {}
    urls: dict[str, str] = {}
    for item in listed.split("\0"):
        key, _, value = item.partition("\n")
        if key.startswith("submodule.") and key.endswith(".path"):
            paths[key[len("submodule.") : -len(".path")]] = value
        elif key.startswith("submodule.") and key.endswith(".url"):
            urls[key[len("submodule.") : -len(".url")]] = value
    return {path: urls[name] for name, path in paths.items() if name in urls}


def _place(tree: Path, rel: str, content: Path, label: str) -> None:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..", ".git") for p in parts):
        raise SourceError(f"{label}: refusing submodule path {rel!r}")
    cur = tree
    for part in parts[:-1]:
        cur = cur / part
        if cur.is_symlink() or (cur.exists() and not cur.is_dir()):
            raise SourceError(f"{label}: submodule path {rel!r} goes through a file or symlink")
    dest = tree.joinpath(*parts)
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        raise SourceError(f"{label}: submodule path {rel!r} is already taken in the tree")
    if dest.exists():
        dest.rmdir()
    shutil.copytree(content, dest, symlinks=True)


def _with_submodules(
    mirror: Path,
    sha: str,
    plain: Path,
    *,
    url: str,
    label: str,
    name: str,
    cache: Path,
    timeout: float,
    depth: int,
    policy: FetchPolicy,
) -> tuple[Path, dict[str, str]]:
    links = _gitlinks(mirror, sha, timeout)
    if not links:
        return plain, {}
    pinned = dict(links)
    trees = cache / "git" / "trees"
    final = trees / f"{name}-{sha[:16]}-submodules"
    if final.is_dir():
        return final, pinned
    with temp_dir(trees) as tmp:
        modules = _gitmodules(mirror, sha, tmp, timeout)
        parts: list[tuple[str, Path]] = []
        for path, sub_sha in links:
            if path not in modules:
                raise SourceError(f"{label}: submodule {path!r} has no URL in .gitmodules")
            sub_url = submodule_url(url, modules[path])
            _check_submodule_url(url, sub_url, label)
            sub = fetch_git(
                sub_url,
                sub_sha,
                label=f"{label} (submodule {path})",
                name=safe_name(git_name(sub_url)),
                cache=cache,
                timeout=timeout,
                submodules=depth + 1 < MAX_SUBMODULE_DEPTH,
                policy=policy,
                _depth=depth + 1,
            )
            parts.append((path, cache / "git" / sub["path"]))
        tree = tmp / "tree"
        shutil.copytree(plain, tree, symlinks=True)
        for path, content in parts:
            _place(tree, path, content, label)
        return publish(tree, final), pinned


@register
class GitKind(SourceKind):
    """``git:`` sources: a repository (a URL, or a path / ``file://`` URL on this machine) at a ref."""

    kind = "git"
    model = GitSource
    url_field = "git"

    def label(self, spec: Any) -> str:
        return redact(spec.git)

    def short_name(self, spec: Any) -> str:
        return safe_name(git_name(spec.git), "git")

    def local(self, spec: Any) -> tuple[str, str] | None:
        if not is_file_url(spec.git) and is_remote(spec.git):
            return None
        return "git", file_url_path(spec.git) if is_file_url(spec.git) else spec.git

    def fetch(self, spec: Any, job: FetchJob) -> FetchedSource:
        if job.local_path is not None:
            target, url = str(job.local_path), job.local_path.as_uri()
        else:
            target, url = spec.git, redact(spec.git)
        rec = fetch_git(
            target,
            spec.ref,
            label=job.label,
            name=job.name,
            cache=job.cache,
            timeout=job.timeout,
            submodules=spec.submodules,
            policy=job.policy,
        )
        root = job.cache / "git" / rec["path"]
        return FetchedSource(
            kind="git",
            label=job.label,
            name=job.name,
            path=subdir(root, spec, job.label),
            commit=rec["commit"],
            version=rec.get("version"),
            license=detect_license(root),
            url=url,
            last_update=parse_date(rec.get("last_update")),
        )

    def pin(self, spec: Any, fetched: FetchedSource) -> Any:
        return spec.model_copy(update={"ref": fetched.commit}) if fetched.commit else spec
