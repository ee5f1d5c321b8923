"""The GitHub REST API, just enough of it for a crawl: search, branches, trees.

:class:`GithubClient` is an httpx client that

* rotates several tokens: each request goes out with the live token that has
  the most requests left (``X-RateLimit-Remaining``); a token GitHub refuses
  (401) is dropped for the rest of the crawl, and the error names no token;
* honours the primary rate limit (``X-RateLimit-Remaining: 0`` until
  ``X-RateLimit-Reset``) by switching tokens, then by waiting, and the
  secondary one (403/429 with ``Retry-After``, or a "secondary rate limit"
  message: at least a minute, doubling) by waiting; a wait longer than
  ``max_wait`` is raised as :class:`RateLimited` with the seconds to wait, so a
  Celery task can retry later instead of holding a worker;
* makes conditional requests: with an :class:`EtagCache`, a page fetched before
  is asked for with ``If-None-Match`` and a ``304 Not Modified`` (which GitHub
  does not count against the rate limit) is answered from the cache;
* retries 5xx answers and dropped connections a few times with backoff, then
  raises :class:`GithubUnavailable` (transient: the crawl resumes later);
* follows ``Link: rel="next"`` and nothing else, and only on the API's own
  host and port, so a token never leaves for another host; redirects are not
  followed.

The crawl itself (windows of a search, resumable state in the database) is
``assemblage.pipeline.crawl``; this module knows nothing of the database.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx

from assemblage.errors import SourceError
from assemblage.recipes.models import GithubSource
from assemblage.sources.fetched import FetchedSource
from assemblage.sources.kinds import Expansion, FetchJob, SourceKind, register

__all__ = [
    "DEFAULT_API_URL",
    "GithubKind",
    "EtagCache",
    "GithubClient",
    "GithubUnavailable",
    "Page",
    "RateLimited",
    "SEARCH_CAP",
    "build_system_in_tree",
    "search_url",
    "split_range",
]

DEFAULT_API_URL = "https://api.github.com"
SEARCH_CAP = 1000  # the search API answers at most this many results per query
PER_PAGE = 100
SERVER_RETRIES = 4
SECONDARY_MIN_WAIT = 60.0


class RateLimited(SourceError):
    """Every token is rate limited for longer than the caller wants to wait here."""

    def __init__(self, message: str, wait: float) -> None:
        super().__init__(message)
        self.wait = wait


class GithubUnavailable(SourceError):
    """GitHub answered 5xx or dropped the connection, again and again: try later."""


class EtagCache(Protocol):
    """Where answers are kept for conditional requests (keyed by URL; never by token)."""

    def get(self, url: str) -> tuple[str, str] | None:
        """(etag, body text) of an earlier answer for ``url``, or None."""
        ...

    def put(self, url: str, etag: str, body: str) -> None:
        """Remember the answer for ``url``."""
        ...


@dataclass(frozen=True)
class Page:
    """One answer: its JSON body, the next page's URL, and whether it came from a 304."""

    body: Any
    next_url: str | None
    not_modified: bool = False


@dataclass
class _Token:
    value: str
    remaining: int | None = None  # None: not known yet
    reset: float = 0.0  # epoch seconds when ``remaining`` refills
    dead: bool = False


@dataclass
class ClientStats:
    requests: int = 0
    not_modified: int = 0
    waited: float = 0.0
    retries: int = 0
    refused_tokens: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


class GithubClient:
    """See the module docstring. ``transport`` and ``sleep`` are for tests (an httpx transport, a clock)."""

    def __init__(
        self,
        tokens: Iterable[str],
        api_url: str = DEFAULT_API_URL,
        *,
        cache: EtagCache | None = None,
        timeout: float = 30,
        max_wait: float = 120,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clone_prefix: str = "https://github.com/",
    ) -> None:
        self._tokens = [_Token(t) for t in dict.fromkeys(t.strip() for t in tokens) if t]
        if not self._tokens:
            raise SourceError(
                "GitHub search needs an API token: set ASSEMBLAGE_GITHUB_TOKEN "
                "(a personal access token; several may be given, comma-separated)"
            )
        self.api_url = api_url.rstrip("/")
        # what a search result's clone URL must start with: a hostile or broken answer must not
        # point the workers at file:// paths or other hosts
        self.clone_prefix = clone_prefix
        parts = urlsplit(self.api_url)
        self._origin = (parts.scheme, parts.netloc)
        self.cache = cache
        self.max_wait = max_wait
        self.stats = ClientStats()
        self._sleep = sleep
        self._http = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            transport=transport,
            headers={
                "Accept": "application/vnd.github+json",
                "User-Agent": "assemblage",
                "X-GitHub-Api-Version": "2022-11-28",
            },
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GithubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport

    def _pick(self) -> _Token:
        live = [t for t in self._tokens if not t.dead]
        if not live:
            raise SourceError("GitHub refused every token (401): check ASSEMBLAGE_GITHUB_TOKEN")
        now = time.time()
        for t in live:
            if t.remaining == 0 and t.reset <= now:
                t.remaining = None  # its window has passed
        usable = [t for t in live if t.remaining != 0]
        if usable:
            return max(usable, key=lambda t: t.remaining if t.remaining is not None else 1 << 30)
        wait = max(0.0, min(t.reset for t in live) - now) + 1
        self._wait(wait, "the primary rate limit of every token")
        return self._pick()

    def _wait(self, seconds: float, why: str) -> None:
        if self.stats.waited + seconds > self.max_wait:
            raise RateLimited(
                f"GitHub API: {why} lasts {seconds:.0f} s more (waited {self.stats.waited:.0f} s of "
                f"at most {self.max_wait:.0f} s here); add tokens or retry later",
                wait=seconds,
            )
        self._sleep(seconds)
        self.stats.waited += seconds

    def get(self, url: str) -> Page:
        """GET an absolute URL on the API host; the JSON body and the next page's URL."""
        if (urlsplit(url).scheme, urlsplit(url).netloc) != self._origin:
            raise SourceError(f"GitHub API: refusing to follow a link to another host: {urlsplit(url).netloc}")
        cached = self.cache.get(url) if self.cache is not None else None
        secondary = SECONDARY_MIN_WAIT
        server_errors = 0
        while True:
            token = self._pick()
            headers = {"Authorization": f"Bearer {token.value}"}
            if cached:
                headers["If-None-Match"] = cached[0]
            self.stats.requests += 1
            try:
                resp = self._http.get(url, headers=headers)
            except httpx.TransportError as exc:
                server_errors += 1
                if server_errors > SERVER_RETRIES:
                    raise GithubUnavailable(
                        f"cannot reach the GitHub API at {self.api_url} "
                        f"({type(exc).__name__}); GitHub search needs network access "
                        "(ASSEMBLAGE_GITHUB_API_URL sets another endpoint)"
                    ) from None
                self.stats.retries += 1
                self._sleep(0.5 * 2 ** (server_errors - 1))
                continue
            self.stats.statuses[resp.status_code] = self.stats.statuses.get(resp.status_code, 0) + 1
            _note_limits(token, resp.headers)
            if resp.status_code == 304 and cached:
                self.stats.not_modified += 1
                return Page(json.loads(cached[1]), _next(resp, self._origin), not_modified=True)
            if resp.status_code == 200:
                try:
                    body = resp.json()
                except ValueError:
                    raise GithubUnavailable(f"GitHub API {_path(url)}: the answer is not JSON") from None
                etag = resp.headers.get("etag")
                if self.cache is not None and etag:
                    self.cache.put(url, etag, resp.text)
                return Page(body, _next(resp, self._origin))
            message = _message(resp)
            if resp.status_code == 401:
                token.dead = True
                self.stats.refused_tokens += 1
                continue  # the next token, or "every token refused"
            if resp.status_code in (403, 429):
                if resp.headers.get("x-ratelimit-remaining") == "0" and "secondary" not in message.lower():
                    if token.reset <= time.time():  # no usable reset time: treat it as a minute
                        token.reset = time.time() + SECONDARY_MIN_WAIT
                    continue  # primary limit: _pick switches tokens or waits for the reset
                if "retry-after" in resp.headers or "rate limit" in message.lower() or resp.status_code == 429:
                    pause = _float(resp.headers.get("retry-after"), secondary)
                    self._wait(pause, "a secondary rate limit")
                    secondary = min(secondary * 2, 3600)
                    continue
                raise SourceError(f"GitHub API {_path(url)}: HTTP {resp.status_code}: {message}")
            if resp.status_code >= 500:
                server_errors += 1
                if server_errors > SERVER_RETRIES:
                    raise GithubUnavailable(
                        f"GitHub API {_path(url)}: HTTP {resp.status_code} {SERVER_RETRIES + 1} times: {message}"
                    )
                self.stats.retries += 1
                self._sleep(0.5 * 2 ** (server_errors - 1))
                continue
            if resp.status_code == 422:
                raise SourceError(f"GitHub search rejected the query (422): {message}")
            if resp.status_code in (404, 409, 451):
                raise RepositoryGone(f"GitHub API {_path(url)}: HTTP {resp.status_code}: {message}")
            raise SourceError(f"GitHub API {_path(url)}: HTTP {resp.status_code}: {message}")

    # -- the calls a crawl makes

    def branch(self, full_name: str, branch: str) -> tuple[str, str] | None:
        """(commit sha, tree sha) of a branch, or None when the repository or branch is gone or empty."""
        owner, _, repo = full_name.partition("/")
        url = f"{self.api_url}/repos/{quote(owner, safe='')}/{quote(repo, safe='')}/branches/{quote(branch, safe='')}"
        try:
            body = self.get(url).body
        except RepositoryGone:
            return None
        commit = (body or {}).get("commit") or {}
        sha = commit.get("sha")
        tree = ((commit.get("commit") or {}).get("tree") or {}).get("sha")
        if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{40}", sha)):
            return None
        return sha, tree if isinstance(tree, str) and re.fullmatch(r"[0-9a-f]{40}", tree) else sha

    def tree(self, full_name: str, tree_sha: str) -> list[dict]:
        """The entries of a repository's tree, recursively (GitHub may truncate a huge one)."""
        owner, _, repo = full_name.partition("/")
        url = (
            f"{self.api_url}/repos/{quote(owner, safe='')}/{quote(repo, safe='')}/git/trees/"
            f"{quote(tree_sha, safe='')}?recursive=1"
        )
        try:
            body = self.get(url).body
        except RepositoryGone:
            return []
        entries = (body or {}).get("tree") or []
        return [e for e in entries if isinstance(e, dict) and isinstance(e.get("path"), str)]


class RepositoryGone(SourceError):
    """404/409/451: the repository (or branch) is gone, empty or blocked."""


def search_url(api_url: str, query: str) -> str:
    """The first page of a repository search."""
    return str(
        httpx.URL(f"{api_url.rstrip('/')}/search/repositories", params={"q": query, "per_page": PER_PAGE, "page": 1})
    )


def split_range(created: str) -> tuple[str, str] | None:
    """``2021-01-01..2021-12-31`` -> its two halves; None for a single day."""
    start_s, _, end_s = created.partition("..")
    start = date.fromisoformat(start_s)
    end = date.fromisoformat(end_s or start_s)
    if end <= start:
        return None
    middle = start + (end - start) // 2
    return f"{start}..{middle}", f"{middle + timedelta(days=1)}..{end}"


_BUILD_FILES = {
    "Makefile": "make",
    "makefile": "make",
    "GNUmakefile": "make",
    "CMakeLists.txt": "cmake",
    "configure": "autotools",
    "configure.ac": "autotools",
    "configure.in": "autotools",
    "meson.build": "meson",
}
_SOURCE_SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".c++")


# in the engine's order of preference (assemblage.builds.systems.PLANNERS)
_PREFERENCE = ("cmake", "meson", "autotools", "make", "msbuild", "plain")


def build_system_in_tree(entries: list[dict], subdir: str | None = None) -> str | None:
    """The build system a repository's tree offers at its top (or ``subdir``), as the engine would pick it.

    Build files at the top count, in the engine's order of preference; Visual
    Studio solutions count (``msbuild``); otherwise C/C++ files anywhere make the
    plain-folder fallback (``plain``). None: nothing we could build, so the
    repository is not cloned.
    """
    prefix = (subdir.strip("/") + "/") if subdir else ""
    found: set[str] = set()
    for e in entries:
        path = e["path"]
        if e.get("type") != "blob" or (prefix and not path.startswith(prefix)):
            continue
        rel = path[len(prefix) :]
        if "/" not in rel:
            if rel in _BUILD_FILES:
                found.add(_BUILD_FILES[rel])
            elif rel.endswith((".sln", ".vcxproj")):
                found.add("msbuild")
        if rel.lower().endswith(_SOURCE_SUFFIXES):
            found.add("plain")
    return next((name for name in _PREFERENCE if name in found), None)


def _note_limits(token: _Token, headers: httpx.Headers) -> None:
    remaining = headers.get("x-ratelimit-remaining")
    if remaining is not None and remaining.isdigit():
        token.remaining = int(remaining)
    reset = headers.get("x-ratelimit-reset")
    if reset is not None:
        token.reset = _float(reset, token.reset)


def _next(resp: httpx.Response, origin: tuple[str, str]) -> str | None:
    url = (resp.links.get("next") or {}).get("url")
    if not url:
        return None
    parts = urlsplit(url)
    return url if (parts.scheme, parts.netloc) == origin else None


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.reason_phrase or f"HTTP {resp.status_code}"
    return str(body.get("message") if isinstance(body, dict) and body.get("message") else body)[:300]


def _float(value: str | None, default: float) -> float:
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def _path(url: str) -> str:
    return urlsplit(url).path


@register
class GithubKind(SourceKind):
    """``github:`` searches: never fetched themselves; a crawl (:mod:`assemblage.pipeline.crawl`) turns the
    repositories it accepts into ``git:`` sources."""

    kind = "github"
    model = GithubSource

    def label(self, spec: Any) -> str:
        return f"github:{spec.github.query}"

    def short_name(self, spec: Any) -> str:
        return "github"

    def expands(self, spec: Any) -> Expansion | None:
        return "crawl"

    def at_most(self, spec: Any) -> int:
        return spec.github.limit

    def fetch(self, spec: Any, job: FetchJob) -> FetchedSource:
        raise SourceError(
            f"{job.label}: a github search becomes git sources through a crawl (assemblage.pipeline.crawl)"
        )
