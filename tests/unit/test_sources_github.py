"""The GitHub search client against a small fake API served on 127.0.0.1 by the test."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import pytest

from assemblage.errors import SourceError
from assemblage.recipes.models import GithubQuery, GithubSource, GitSource
from assemblage.sources import expand_github, fetch_source

TOKEN = "ghp_test_token"


def _repo(owner: str, name: str, license_key: str | None = "mit", created: str = "2021-06-01") -> dict:
    return {
        "full_name": f"{owner}/{name}",
        "clone_url": f"https://github.com/{owner}/{name}.git",
        "default_branch": "main" if name != "old" else "master",
        "license": {"key": license_key} if license_key else None,
        "created_at": f"{created}T00:00:00Z",
    }


class FakeGithub:
    """Serves /search/repositories (paged, Link headers) and /repos/O/R/branches/B."""

    def __init__(self, repos: list[dict], *, total_override: dict[str, int] | None = None) -> None:
        self.repos = repos
        self.total_override = total_override or {}
        self.queries: list[str] = []
        self.paths: list[str] = []
        self.auth: set[str] = set()
        self.rate_limit_next = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                fake.paths.append(self.path)
                fake.auth.add(self.headers.get("Authorization", ""))
                if self.headers.get("Authorization") not in (f"Bearer {TOKEN}", "Bearer second"):
                    return self._send(401, {"message": "Bad credentials"})
                if fake.rate_limit_next:
                    fake.rate_limit_next -= 1
                    return self._send(403, {"message": "API rate limit exceeded"},
                                      {"Retry-After": "0", "X-RateLimit-Remaining": "0"})
                url = urllib.parse.urlsplit(self.path)
                qs = urllib.parse.parse_qs(url.query)
                if url.path == "/search/repositories":
                    return self._search(qs)
                parts = [urllib.parse.unquote(p) for p in url.path.split("/")]
                if len(parts) == 6 and parts[1] == "repos" and parts[4] == "branches":
                    full = f"{parts[2]}/{parts[3]}"
                    if full == "gone/away":
                        return self._send(404, {"message": "Not Found"})
                    sha = format(abs(hash((full, parts[5]))) % (1 << 160), "040x")
                    return self._send(200, {"name": parts[5], "commit": {"sha": sha}})
                return self._send(404, {"message": "Not Found"})

            def _search(self, qs: dict) -> None:
                q = qs["q"][0]
                fake.queries.append(q)
                page, per_page = int(qs.get("page", ["1"])[0]), int(qs.get("per_page", ["30"])[0])
                terms = q.split()
                matches = list(fake.repos)
                for term in terms:
                    if term.startswith("license:"):
                        matches = [r for r in matches if (r["license"] or {}).get("key") == term[8:]]
                    elif term.startswith("created:"):
                        lo, _, hi = term[8:].partition("..")
                        matches = [r for r in matches if lo <= r["created_at"][:10] <= (hi or lo)]
                    if term == "error:422":
                        return self._send(422, {"message": "Validation Failed"})
                total = fake.total_override.get(q, len(matches))
                chunk = matches[(page - 1) * per_page: page * per_page]
                headers = {}
                if page * per_page < min(len(matches), 1000):
                    nxt = urllib.parse.urlencode({"q": q, "per_page": per_page, "page": page + 1})
                    host = self.headers.get("Host")
                    headers["Link"] = f'<http://{host}/search/repositories?{nxt}>; rel="next", <x>; rel="last"'
                return self._send(200, {"total_count": total, "incomplete_results": False, "items": chunk}, headers)

            def _send(self, code: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _spec(query: str = "language:c", **kw) -> GithubSource:
    return GithubSource(github=GithubQuery(query=query, **kw))


def test_search_pages_pins_and_filters() -> None:
    repos = [_repo("o", f"r{i}") for i in range(250)] + [_repo("p", "gpl", "gpl-3.0"), _repo("q", "old", "zlib")]
    with FakeGithub(repos) as gh:
        got = expand_github(_spec(licenses=["mit", "zlib"], limit=230), token=TOKEN, api_url=gh.url)
    assert len(got) == 230
    assert all(isinstance(s, GitSource) for s in got)
    assert got[0].git == "https://github.com/o/r0.git" and got[0].name == "o.r0"
    assert all(len(s.ref) == 40 for s in got)
    assert len({s.git for s in got}) == 230
    assert gh.queries[0] == "language:c license:mit"
    assert len([p for p in gh.paths if p.startswith("/search")]) == 3  # 100 + 100 + 30 (stopped at the limit)
    assert gh.auth == {f"Bearer {TOKEN}"}


def test_licence_queries_are_merged_and_deduplicated() -> None:
    repos = [_repo("o", "a"), _repo("o", "b", "bsd-3-clause"), _repo("q", "old", "zlib"), _repo("x", "y", "gpl-2.0")]
    with FakeGithub(repos) as gh:
        got = expand_github(_spec(licenses=["MIT", "bsd-3-clause", "zlib"]), token=TOKEN, api_url=gh.url)
    assert [s.name for s in got] == ["o.a", "o.b", "q.old"]
    assert "/repos/q/old/branches/master" in gh.paths  # each repository's own default branch


def test_created_range_is_split_when_over_the_search_cap() -> None:
    repos = [_repo("a", f"early{i}", created="2021-01-10") for i in range(3)]
    repos += [_repo("b", f"late{i}", created="2021-11-20") for i in range(3)]
    # pretend the whole year has more than 1000 results, so the client must split the range
    with FakeGithub(repos, total_override={"language:c created:2021-01-01..2021-12-31": 5000}) as gh:
        got = expand_github(_spec(created="2021-01-01..2021-12-31", limit=10), token=TOKEN, api_url=gh.url)
    assert sorted(s.name for s in got) == sorted(f"a.early{i}" for i in range(3)) + sorted(f"b.late{i}" for i in range(3))
    assert "language:c created:2021-01-01..2021-07-02" in gh.queries
    assert "language:c created:2021-07-03..2021-12-31" in gh.queries


def test_rate_limit_is_waited_out_and_tokens_rotate() -> None:
    with FakeGithub([_repo("o", "a")]) as gh:
        gh.rate_limit_next = 2
        got = expand_github(_spec(), token=TOKEN, api_url=gh.url)
        assert [s.name for s in got] == ["o.a"]
        gh.rate_limit_next = 1
        gh.auth.clear()
        expand_github(_spec(), token=f"{TOKEN},second", api_url=gh.url)
        assert gh.auth == {f"Bearer {TOKEN}", "Bearer second"}


def test_rate_limit_longer_than_we_wait() -> None:
    with FakeGithub([_repo("o", "a")]) as gh:
        gh.rate_limit_next = 100
        with pytest.raises(SourceError, match="rate limit"):
            expand_github(_spec(), token=TOKEN, api_url=gh.url, max_wait=0.5)


def test_no_token_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASSEMBLAGE_GITHUB_TOKEN", raising=False)
    with pytest.raises(SourceError, match="ASSEMBLAGE_GITHUB_TOKEN"):
        expand_github(_spec())


def test_bad_token_and_bad_query() -> None:
    with FakeGithub([_repo("o", "a")]) as gh:
        with pytest.raises(SourceError, match="401"):
            expand_github(_spec(), token="wrong", api_url=gh.url)
        with pytest.raises(SourceError, match="422"):
            expand_github(_spec("error:422"), token=TOKEN, api_url=gh.url)


def test_no_network_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSEMBLAGE_GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("ASSEMBLAGE_GITHUB_API_URL", "http://127.0.0.1:9")
    with pytest.raises(SourceError, match="cannot reach the GitHub API.*network"):
        expand_github(_spec())


def test_environment_settings_and_vanished_repositories(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeGithub([_repo("o", "a"), _repo("gone", "away")]) as gh:
        monkeypatch.setenv("ASSEMBLAGE_GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("ASSEMBLAGE_GITHUB_API_URL", gh.url)
        got = expand_github(_spec())
    assert [s.name for s in got] == ["o.a"]


def test_links_to_other_hosts_are_not_followed() -> None:
    from assemblage.sources.github import GithubClient

    client = GithubClient([TOKEN], "http://127.0.0.1:1")
    with pytest.raises(SourceError, match="another host"):
        client.get("http://evil.example/steal")


def test_github_spec_is_expanded_not_fetched(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="expand_github"):
        fetch_source(_spec(), base=tmp_path, cache=tmp_path)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_expanded_sources_fetch_end_to_end(tmp_path: Path) -> None:
    """Search results whose clone URLs are local repositories, fetched at the pinned commit."""
    origin = tmp_path / "o" / "lib"
    origin.mkdir(parents=True)
    env_args = ["-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "-C", str(origin), "init", "-q", "-b", "main"], check=True)
    (origin / "lib.c").write_text("int lib;\n")
    subprocess.run(["git", "-C", str(origin), "add", "-A"], check=True)
    subprocess.run(["git", *env_args, "-C", str(origin), "commit", "-q", "-m", "x"], check=True)
    head = subprocess.run(["git", "-C", str(origin), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    item = _repo("o", "lib")
    item["clone_url"] = str(origin)
    with FakeGithub([item]) as gh:
        [spec] = expand_github(_spec(), token=TOKEN, api_url=gh.url)
    spec = spec.model_copy(update={"ref": head})  # the fake API cannot know the real SHA
    got = fetch_source(spec, base=tmp_path, cache=tmp_path / "cache")
    assert got.commit == head and (got.path / "lib.c").exists() and got.name == "o.lib"
