"""A local server that speaks the subset of GitHub's REST API a crawl uses, with GitHub's failure modes.

Served on 127.0.0.1 by the tests (``with FakeGithub(repos) as gh: gh.url``):

* ``GET /search/repositories?q=&per_page=&page=``: ``license:``, ``created:A..B`` and ``fork:true``
  qualifiers, pages with ``Link: <...>; rel="next"``, at most 1000 results per query,
  ``total_count`` (``total_override`` pretends a query has more);
* ``GET /repos/O/R/branches/B`` (commit and tree sha) and ``GET /repos/O/R/git/trees/SHA?recursive=1``;
* strong ETags on every 200, ``304 Not Modified`` for a matching ``If-None-Match``
  (not counted against the quota, as on GitHub);
* a quota per token (``quota``: requests left, ``X-RateLimit-Remaining``/``Reset``, 403 when spent),
  a secondary rate limit (``secondary_next``: 403 with ``Retry-After``), 429s, 5xx answers
  (``fail_next``), 401 for unknown tokens, and a delay per request (``delay``).

Every request is logged in ``log`` as (path with query, status, token).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

TOKEN = "ghp_fake_token_1234567890"


def sha(*parts: str) -> str:
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()


def repo(
    owner: str,
    name: str,
    *,
    license_key: str | None = "mit",
    created: str = "2021-06-01",
    files: tuple[str, ...] = ("Makefile", "main.c"),
    fork: bool = False,
    mirror: bool = False,
    commit: str | None = None,
    clone_url: str | None = None,
    branch: str = "main",
) -> dict[str, Any]:
    full = f"{owner}/{name}"
    return {
        "full_name": full,
        "clone_url": clone_url or f"https://github.com/{full}.git",
        "default_branch": branch,
        "license": {"key": license_key} if license_key else None,
        "created_at": f"{created}T00:00:00Z",
        "fork": fork,
        "mirror_url": f"https://example.org/{full}.git" if mirror else None,
        "_files": list(files),
        "_commit": commit or sha("commit", full),
    }


class FakeGithub:
    def __init__(
        self, repos: list[dict], *, tokens: tuple[str, ...] = (TOKEN,), total_override: dict[str, int] | None = None
    ) -> None:
        self.repos = repos
        self.tokens = set(tokens)
        self.total_override = total_override or {}
        self.log: list[tuple[str, int, str]] = []
        self.quota: dict[str, int] = {}  # token -> requests left (absent: unlimited)
        self.reset_in = 1.0  # seconds until a spent quota refills
        self._reset_at: dict[str, float] = {}
        self.secondary_next = 0
        self.retry_after = "1"
        self.too_many_next = 0
        self.fail_next = 0
        self.delay = 0.0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if fake.delay:
                    time.sleep(fake.delay)
                auth = self.headers.get("Authorization", "")
                token = auth.removeprefix("Bearer ")
                status, body, headers = fake._answer(
                    self.path, token, self.headers.get("If-None-Match"), self.headers.get("Host")
                )
                with fake.lock:
                    fake.log.append((self.path, status, token))
                data = b"" if status == 304 else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what the tests read

    def requests(self, prefix: str = "/", status: int | None = None) -> list[str]:
        with self.lock:
            return [p for p, st, _ in self.log if p.startswith(prefix) and (status is None or st == status)]

    def tokens_used(self) -> set[str]:
        with self.lock:
            return {t for _, _, t in self.log}

    # -- the API

    def _answer(self, path: str, token: str, etag_in: str | None, host: str | None):
        with self.lock:
            if token not in self.tokens:
                return 401, {"message": "Bad credentials"}, {}
            if self.fail_next:
                self.fail_next -= 1
                return 502, {"message": "Server Error"}, {}
            if self.secondary_next:
                self.secondary_next -= 1
                return 403, {"message": "You have exceeded a secondary rate limit."}, {"Retry-After": self.retry_after}
            if self.too_many_next:
                self.too_many_next -= 1
                return 429, {"message": "Too Many Requests"}, {"Retry-After": self.retry_after}
            left = self.quota.get(token)
            now = time.time()
            if left is not None and left <= 0 and now >= self._reset_at.get(token, 0):
                self.quota[token] = left = self._refill.get(token, 0)
            if left is not None and left <= 0:
                return (
                    403,
                    {"message": "API rate limit exceeded for user."},
                    {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(self._reset_at[token]) + 1)},
                )
        status, body, headers = self._route(path, host)
        if status == 200:
            etag = '"' + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32] + '"'
            headers["ETag"] = etag
            if etag_in == etag:
                return 304, None, headers  # free, as on GitHub
        with self.lock:
            if left is not None:
                self.quota[token] = left - 1
                if left - 1 <= 0:
                    self._reset_at[token] = time.time() + self.reset_in
                headers["X-RateLimit-Remaining"] = str(left - 1)
                headers["X-RateLimit-Reset"] = str(int(self._reset_at.get(token, time.time())) + 1)
        return status, body, headers

    _refill: dict[str, int] = {}

    def set_quota(self, token: str, n: int, *, refill: int = 100) -> None:
        self.quota[token] = n
        self._refill = {**self._refill, token: refill}
        if n <= 0:
            self._reset_at[token] = time.time() + self.reset_in

    def _route(self, path: str, host: str | None):
        url = urllib.parse.urlsplit(path)
        qs = urllib.parse.parse_qs(url.query)
        if url.path == "/search/repositories":
            return self._search(qs, host)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")]
        if len(parts) == 6 and parts[1] == "repos" and parts[4] == "branches":
            r = self._repo(f"{parts[2]}/{parts[3]}")
            if r is None or parts[5] != r["default_branch"]:
                return 404, {"message": "Branch not found"}, {}
            return (
                200,
                {"name": parts[5], "commit": {"sha": r["_commit"], "commit": {"tree": {"sha": self._tree(r)}}}},
                {},
            )
        if len(parts) == 7 and parts[1] == "repos" and parts[4] == "git" and parts[5] == "trees":
            r = self._repo(f"{parts[2]}/{parts[3]}")
            if r is None or parts[6] != self._tree(r):
                return 404, {"message": "Not Found"}, {}
            return (
                200,
                {"sha": parts[6], "tree": [{"path": f, "type": "blob"} for f in r["_files"]], "truncated": False},
                {},
            )
        return 404, {"message": "Not Found"}, {}

    def _repo(self, full: str) -> dict | None:
        return next((r for r in self.repos if r["full_name"] == full), None)

    @staticmethod
    def _tree(r: dict) -> str:
        return sha("tree", *sorted(r["_files"]), r["_commit"])

    def _search(self, qs: dict, host: str | None):
        q = qs["q"][0]
        page, per_page = int(qs.get("page", ["1"])[0]), int(qs.get("per_page", ["30"])[0])
        matches = [r for r in self.repos if not r["fork"]]
        for term in q.split():
            if term == "fork:true":
                matches = list(self.repos)
            elif term.startswith("license:"):
                matches = [r for r in matches if (r["license"] or {}).get("key") == term[8:]]
            elif term.startswith("created:"):
                lo, _, hi = term[8:].partition("..")
                matches = [r for r in matches if lo <= r["created_at"][:10] <= (hi or lo)]
            elif term == "error:422":
                return 422, {"message": "Validation Failed"}, {}
        total = self.total_override.get(q, len(matches))
        chunk = matches[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < min(len(matches), 1000):
            nxt = urllib.parse.urlencode({"q": q, "per_page": per_page, "page": page + 1})
            headers["Link"] = f'<http://{host}/search/repositories?{nxt}>; rel="next", <x>; rel="last"'
        items = [{k: v for k, v in r.items() if not k.startswith("_")} for r in chunk]
        return 200, {"total_count": total, "incomplete_results": False, "items": items}, headers
