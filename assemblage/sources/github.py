"""GitHub repository search -> git sources pinned to each default branch's commit.

A small client on urllib (no extra dependency): token from the argument or
``ASSEMBLAGE_GITHUB_TOKEN`` (several tokens, comma-separated, are used in turn
when one hits its rate limit), API base from the argument,
``ASSEMBLAGE_GITHUB_API_URL`` or ``https://api.github.com``.

The search API answers at most 1000 results per query, so a query whose
``created`` range has more is split in halves until each part fits; one query
runs per licence (``license:mit``), results are de-duplicated by repository
and stop at ``limit``. Pagination follows the ``Link: rel="next"`` header,
only on the API's own host, so the token never leaves for another host.
Rate limits (403/429 with ``Retry-After`` or ``X-RateLimit-Reset``) are waited
out up to ``max_wait`` seconds per request.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import date, timedelta
from typing import Any

from pydantic import ValidationError

from assemblage.errors import SourceError
from assemblage.recipes.models import GithubSource, GitSource
from assemblage.sources._util import safe_name

__all__ = ["DEFAULT_API_URL", "GithubClient", "expand_github"]

DEFAULT_API_URL = "https://api.github.com"
SEARCH_CAP = 1000
PER_PAGE = 100
MAX_RETRIES = 8  # rate-limit retries of one request


class GithubClient:
    """Just enough of the GitHub REST API: search repositories, read a branch."""

    def __init__(self, tokens: list[str], api_url: str, *, timeout: float = 30, max_wait: float = 120) -> None:
        if not tokens:
            raise SourceError(
                "GitHub search needs an API token: set ASSEMBLAGE_GITHUB_TOKEN "
                "(a personal access token; several may be given, comma-separated)"
            )
        self.tokens = tokens
        self._turn = 0
        self.api_url = api_url.rstrip("/")
        self._origin = urllib.parse.urlsplit(self.api_url)[:2]
        self.timeout = timeout
        self.max_wait = max_wait
        self.requests = 0

    # -- transport

    def get(self, url: str) -> tuple[Any, dict[str, str]]:
        """GET ``url`` (absolute, on the API host) as JSON; returns (body, headers)."""
        if urllib.parse.urlsplit(url)[:2] != self._origin:
            raise SourceError(f"GitHub API: refusing to follow a link to another host: {url}")
        waited = 0.0
        retries = 0
        tried_tokens = 0
        while True:
            request = urllib.request.Request(url, headers={
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {self.tokens[self._turn]}",
                "User-Agent": "assemblage",
                "X-GitHub-Api-Version": "2022-11-28",
            })
            self.requests += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                    body = json.loads(resp.read().decode("utf-8"))
                    return body, {k.lower(): v for k, v in resp.headers.items()}
            except urllib.error.HTTPError as exc:
                headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
                detail = _error_message(exc)
                if exc.code in (403, 429) and _rate_limited(headers, detail):
                    if len(self.tokens) > 1 and tried_tokens < len(self.tokens) - 1:
                        self._turn = (self._turn + 1) % len(self.tokens)
                        tried_tokens += 1
                        continue
                    pause = _retry_after(headers)
                    retries += 1
                    if waited + pause > self.max_wait or retries > MAX_RETRIES:
                        raise SourceError(
                            f"GitHub API rate limit reached and not lifted after {retries - 1} retries "
                            f"({waited:.0f} s; next reset in {pause:.0f} s, we wait at most {self.max_wait:.0f} s); "
                            "add tokens to ASSEMBLAGE_GITHUB_TOKEN or retry later"
                        ) from None
                    time.sleep(pause)
                    waited += pause
                    tried_tokens = 0
                    continue
                if exc.code == 401:
                    raise SourceError("GitHub API refused the token (401): check ASSEMBLAGE_GITHUB_TOKEN") from None
                if exc.code == 422:
                    raise SourceError(f"GitHub search rejected the query (422): {detail}") from None
                raise SourceError(f"GitHub API {url}: HTTP {exc.code}: {detail}") from None
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                raise SourceError(
                    f"cannot reach the GitHub API at {self.api_url} ({reason}); GitHub search needs network "
                    "access (ASSEMBLAGE_GITHUB_API_URL sets another endpoint)"
                ) from None

    # -- search

    def search(self, query: str, *, limit: int) -> tuple[list[dict], int]:
        """Up to ``limit`` (and at most 1000) repositories for one query; also the total GitHub reports."""
        params = urllib.parse.urlencode({"q": query, "per_page": PER_PAGE, "page": 1})
        url: str | None = f"{self.api_url}/search/repositories?{params}"
        items: list[dict] = []
        total = 0
        while url and len(items) < min(limit, SEARCH_CAP):
            body, headers = self.get(url)
            if not isinstance(body, dict):
                raise SourceError("GitHub search answered something that is not a JSON object")
            total = int(body.get("total_count") or 0)
            page = body.get("items") or []
            items.extend(i for i in page if isinstance(i, dict))
            url = _next_link(headers.get("link", "")) if page else None
        return items[:limit], total

    def branch_commit(self, full_name: str, branch: str) -> str | None:
        owner, _, repo = full_name.partition("/")
        path = "/".join(urllib.parse.quote(p, safe="") for p in (owner, repo, "branches", branch))
        try:
            body, _ = self.get(f"{self.api_url}/repos/{path}")
        except SourceError as exc:
            if "HTTP 404" in str(exc) or "HTTP 409" in str(exc):  # gone, or an empty repository
                return None
            raise
        sha = ((body or {}).get("commit") or {}).get("sha")
        return sha if isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{40}", sha) else None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read().decode("utf-8", "replace"))
        return str(body.get("message") or body)
    except Exception:  # noqa: BLE001 - the body is only for the message
        return str(exc.reason)


def _rate_limited(headers: dict[str, str], message: str) -> bool:
    return headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers or "rate limit" in message.lower()


def _retry_after(headers: dict[str, str]) -> float:
    if "retry-after" in headers:
        try:
            return max(0.0, float(headers["retry-after"]))
        except ValueError:
            pass
    if "x-ratelimit-reset" in headers:
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - time.time()) + 1
        except ValueError:
            pass
    return 60.0


def _next_link(link: str) -> str | None:
    for part in link.split(","):
        m = re.match(r'\s*<([^>]+)>\s*;\s*rel="?next"?', part)
        if m:
            return m.group(1)
    return None


def _split_range(created: str) -> tuple[str, str] | None:
    start_s, _, end_s = created.partition("..")
    start = date.fromisoformat(start_s)
    end = date.fromisoformat(end_s or start_s)
    if end <= start:
        return None
    middle = start + (end - start) // 2
    return f"{start}..{middle}", f"{middle + timedelta(days=1)}..{end}"


def _collect(client: GithubClient, base: str, created: str | None, limit: int, out: dict[str, dict]) -> None:
    query = f"{base} created:{created}" if created else base
    items, total = client.search(query, limit=limit - len(out))
    if total > SEARCH_CAP and created and len(out) + len(items) < limit:
        halves = _split_range(created)
        if halves:
            for half in halves:
                if len(out) >= limit:
                    return
                _collect(client, base, half, limit, out)
            return
    for item in items:
        if len(out) >= limit:
            return
        full = item.get("full_name")
        if isinstance(full, str) and full not in out:
            out[full] = item


def expand_github(
    spec: GithubSource,
    *,
    token: str | None = None,
    api_url: str | None = None,
    timeout: float = 30,
    max_wait: float = 120,
) -> list[GitSource]:
    """Run the search of a ``github:`` source; one :class:`GitSource` per repository, commit pinned.

    Raises :class:`SourceError` when there is no token or the API cannot be reached.
    """
    raw = token if token is not None else os.environ.get("ASSEMBLAGE_GITHUB_TOKEN", "")
    tokens = [t.strip() for t in raw.split(",") if t.strip()]
    url = api_url or os.environ.get("ASSEMBLAGE_GITHUB_API_URL") or DEFAULT_API_URL
    client = GithubClient(tokens, url, timeout=timeout, max_wait=max_wait)
    q = spec.github
    wanted = [lic.lower() for lic in q.licenses]
    found: dict[str, dict] = {}
    for lic in wanted or [""]:
        if len(found) >= q.limit:
            break
        base = f"{q.query} license:{lic}" if lic else q.query
        _collect(client, base.strip(), q.created, q.limit, found)
    sources: list[GitSource] = []
    for full_name, item in found.items():
        if len(sources) >= q.limit:
            break
        key = ((item.get("license") or {}).get("key") or "").lower()
        if wanted and key not in wanted:
            continue  # the search is fuzzy; the filter is not
        clone_url = item.get("clone_url") or f"https://github.com/{full_name}.git"
        branch = item.get("default_branch") or "main"
        sha = client.branch_commit(full_name, branch)
        if sha is None:
            continue
        try:
            sources.append(GitSource.model_validate({
                "git": clone_url, "ref": sha, "name": safe_name(full_name.replace("/", "."), "repo"),
                "subdir": spec.subdir,
            }))
        except ValidationError:
            continue  # a clone URL we would not hand to git

    return sources
