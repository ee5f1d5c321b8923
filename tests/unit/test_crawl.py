"""GitHub crawls against a local server that speaks GitHub's API and fails the way GitHub does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import select, text

from assemblage.db import models as m
from assemblage.db.session import init_schema, make_engine, make_sessionmaker, session_scope, sqlite_url
from assemblage.errors import SourceError
from assemblage.pipeline.crawl import (
    DbEtagCache,
    GithubUnavailable,
    RateLimited,
    accepted_sources,
    crawl_report,
    create_crawl,
    run_crawl,
)
from assemblage.recipes.models import GithubQuery, GithubSource
from assemblage.sources.github import GithubClient, build_system_in_tree
from tests.conftest import REPO
from tests.fake_github import TOKEN, FakeGithub, repo


@pytest.fixture
def sessions(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "crawl.sqlite"))
    init_schema(engine)
    return make_sessionmaker(engine)


def spec(query: str = "language:c", **kw) -> GithubSource:
    return GithubSource(github=GithubQuery(query=query, **kw))


def new_crawl(sessions, sp: GithubSource) -> int:
    with session_scope(sessions) as s:
        return create_crawl(s, sp).id


def client(gh: FakeGithub, sessions=None, *, tokens=(TOKEN,), max_wait: float = 30) -> GithubClient:
    return GithubClient(tokens, gh.url, cache=DbEtagCache(sessions) if sessions else None, max_wait=max_wait)


def crawl(sessions, gh: FakeGithub, sp: GithubSource, **kw):
    cid = new_crawl(sessions, sp)
    with client(gh, sessions, **kw) as c:
        out = run_crawl(sessions, cid, c)
    return cid, out


def names(out) -> list[str]:
    return [s.name for s in out.accepted]


def test_pages_licences_and_limit(sessions) -> None:
    repos = [repo("o", f"r{i:03d}") for i in range(250)] + [
        repo("p", "gpl", license_key="gpl-3.0"),
        repo("q", "old", license_key="zlib", branch="master"),
    ]
    with FakeGithub(repos) as gh:
        cid, out = crawl(sessions, gh, spec(licenses=["mit", "zlib"], limit=120))
        assert out.status == "finished" and len(out.accepted) == 120
        assert names(out)[:2] == ["o.r000", "o.r001"] and len(set(names(out))) == 120
        assert all(len(s.ref) == 40 and s.git.startswith("https://github.com/o/") for s in out.accepted)
        # 120 accepted needs 2 pages of the mit window (100 + 20 used): never a page it did not need,
        # and not the zlib window at all
        assert len(gh.requests("/search")) == 2
        assert gh.requests("/search")[0].startswith("/search/repositories?q=language%3Ac+license%3Amit")
        assert len(gh.requests("/repos/")) == 2 * 120  # a branch and a tree per accepted repository
        assert gh.tokens_used() == {TOKEN}
        _, both = crawl(sessions, gh, spec("language:cpp", licenses=["zlib", "mit"], limit=3))
        assert names(both) == ["q.old", "o.r000", "o.r001"]  # zlib first, as listed; its own default branch
        assert "/repos/q/old/branches/master" in gh.requests("/repos/q/old/")
    with sessions() as s:
        rep = crawl_report(s, cid)
    assert rep["requests"] == 2 + 240 and rep["status"] == "finished"
    assert rep["repositories"] == {"accepted": 120, "candidate": 80}


def test_forks_mirrors_copies_and_unbuildable_repositories_are_skipped(sessions) -> None:
    twin = repo("a", "lib")["_commit"]
    repos = [
        repo("a", "lib"),
        repo("b", "fork-of-lib", fork=True),
        repo("c", "mirror", mirror=True),
        repo("d", "copy-of-lib", commit=twin),  # the same commit: a copy
        repo("e", "docs-only", files=("README.md", "docs/index.md")),
        repo("f", "cmake", files=("CMakeLists.txt", "src/x.cpp")),
        repo("g", "plain", files=("src/x.c",)),
        repo("h", "gpl", license_key="gpl-2.0"),
    ]
    with FakeGithub(repos) as gh:
        # fork:true so the search returns the fork and the crawl must drop it itself
        cid, out = crawl(sessions, gh, spec("language:c fork:true", licenses=["mit"]))
        assert names(out) == ["a.lib", "f.cmake", "g.plain"]
        assert not gh.requests("/repos/b/") and not gh.requests("/repos/c/")  # skipped without a request
    with sessions() as s:
        verdicts = dict(
            s.execute(select(m.CrawlRepo.full_name, m.CrawlRepo.reason).where(m.CrawlRepo.crawl_id == cid)).all()
        )
        systems = dict(
            s.execute(
                select(m.CrawlRepo.full_name, m.CrawlRepo.build_system).where(m.CrawlRepo.status == "accepted")
            ).all()
        )
    assert verdicts["b/fork-of-lib"] == "fork" and verdicts["c/mirror"] == "mirror"
    assert verdicts["d/copy-of-lib"] == "duplicate" and verdicts["e/docs-only"] == "no_build_system"
    assert systems == {"a/lib": "make", "f/cmake": "cmake", "g/plain": "plain"}
    assert "h/gpl" not in verdicts  # the licence qualifier kept it out of the search


def test_a_window_over_the_search_cap_is_split(sessions) -> None:
    repos = [repo("a", f"early{i}", created="2021-01-10") for i in range(3)]
    repos += [repo("b", f"late{i}", created="2021-11-20") for i in range(3)]
    # pretend the whole year has more than 1000 results, so the crawl must split the range
    with FakeGithub(repos, total_override={"language:c created:2021-01-01..2021-12-31": 5000}) as gh:
        cid, out = crawl(sessions, gh, spec(created="2021-01-01..2021-12-31", limit=10))
    assert sorted(names(out)) == sorted([f"a.early{i}" for i in range(3)] + [f"b.late{i}" for i in range(3)])
    with sessions() as s:
        windows = {w.created: w.status for w in s.scalars(select(m.CrawlWindow).where(m.CrawlWindow.crawl_id == cid))}
    assert windows == {
        "2021-01-01..2021-12-31": "split",
        "2021-01-01..2021-07-02": "done",
        "2021-07-03..2021-12-31": "done",
    }


def test_unchanged_pages_cost_nothing_the_second_time(sessions) -> None:
    repos = [repo("o", f"r{i}") for i in range(110)]
    with FakeGithub(repos) as gh:
        _, first = crawl(sessions, gh, spec(limit=105))
        n = len(gh.log)
        cid, second = crawl(sessions, gh, spec(limit=105))
        again = gh.log[n:]
    assert names(first) == names(second) and len(first.accepted) == 105
    assert again and all(status == 304 for _, status, _ in again)  # every page, branch and tree: 304
    with sessions() as s:
        c = s.get(m.Crawl, cid)
        assert c.not_modified == c.requests == len(again)


def test_tokens_rotate_on_the_primary_rate_limit_and_waits_are_bounded(sessions) -> None:
    second = "ghp_second_token_abcdef"
    with FakeGithub([repo("o", f"r{i}") for i in range(5)], tokens=(TOKEN, second)) as gh:
        gh.set_quota(TOKEN, 3)
        _, out = crawl(sessions, gh, spec(), tokens=(TOKEN, second))
        assert len(out.accepted) == 5 and gh.tokens_used() == {TOKEN, second}
        limited = [p for p, st, t in gh.log if st == 403]
        assert len(limited) <= 1  # the client noticed the spent quota from the headers, not by hitting it
        # every token spent: the client waits for the earliest reset (about a second here)
        gh.log.clear()
        gh.set_quota(TOKEN, 0, refill=100)
        gh.set_quota(second, 0, refill=100)
        t0 = time.monotonic()
        cid, out = crawl(sessions, gh, spec("language:cpp"), tokens=(TOKEN, second))
        assert out.status == "finished" and time.monotonic() - t0 >= 0.5


def test_a_long_rate_limit_stops_the_crawl_which_resumes_later(sessions) -> None:
    with FakeGithub([repo("o", f"r{i}") for i in range(30)]) as gh:
        cid = new_crawl(sessions, spec())
        with client(gh, sessions) as c:
            run_crawl(sessions, cid, c, max_steps=5)  # the page and two repositories are in
        gh.secondary_next, gh.retry_after = 1, "120"
        with client(gh, sessions, max_wait=10) as c, pytest.raises(RateLimited) as info:
            run_crawl(sessions, cid, c)
        assert info.value.wait == 120
        done_before = len(gh.requests("/repos/", status=200))
        gh.log.clear()
        with client(gh, sessions) as c:
            out = run_crawl(sessions, cid, c)
        assert out.status == "finished" and len(out.accepted) == 30
        # the resumed crawl asked only for what was left: 30 repositories x 2, minus those done
        assert len(gh.requests("/repos/")) == 60 - done_before
        assert not gh.requests("/search", status=200)  # the page it had was not fetched again


def test_secondary_limits_429_and_5xx_are_waited_out(sessions) -> None:
    with FakeGithub([repo("o", "a"), repo("o", "b")]) as gh:
        gh.secondary_next, gh.too_many_next, gh.fail_next, gh.retry_after = 1, 1, 2, "0"
        _, out = crawl(sessions, gh, spec())
        assert names(out) == ["o.a", "o.b"]
        statuses = [st for _, st, _ in gh.log]
        assert statuses.count(502) == 2 and statuses.count(429) == 1 and statuses.count(403) == 1


def test_github_down_is_transient(sessions) -> None:
    with FakeGithub([repo("o", "a")]) as gh:
        gh.fail_next = 100
        cid = new_crawl(sessions, spec())
        with client(gh, sessions) as c, pytest.raises(GithubUnavailable, match="HTTP 502"):
            run_crawl(sessions, cid, c)
    with sessions() as s:
        assert s.get(m.Crawl, cid).status == "running"  # not failed: it resumes


def test_refused_tokens_are_dropped_and_never_shown(sessions, caplog) -> None:
    bad = "ghp_revoked_token_zzzzzz"
    with FakeGithub([repo("o", "a")]) as gh:
        _, out = crawl(sessions, gh, spec(), tokens=(bad, TOKEN))
        assert names(out) == ["o.a"]
        cid, out = crawl(sessions, gh, spec("language:go"), tokens=(bad,))
    assert out.status == "failed" and "refused every token" in out.error
    with sessions() as s:  # no token anywhere in the database
        dump = "\n".join(
            str(row)
            for t in ("crawls", "crawl_windows", "crawl_repos", "http_cache")
            for row in s.execute(text(f"select * from {t}"))
        )
    for secret in (bad, TOKEN):
        assert secret not in dump and secret not in out.error and secret not in caplog.text


def test_a_rejected_query_fails_the_crawl(sessions) -> None:
    with FakeGithub([repo("o", "a")]) as gh:
        _, out = crawl(sessions, gh, spec("error:422"))
    assert out.status == "failed" and "422" in out.error


def test_no_token_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match="ASSEMBLAGE_GITHUB_TOKEN"):
        GithubClient([], "http://127.0.0.1:9")


def test_links_to_other_hosts_are_not_followed() -> None:
    with GithubClient([TOKEN], "http://127.0.0.1:1") as c, pytest.raises(SourceError, match="another host"):
        c.get("http://evil.example/steal")


def test_build_system_from_the_tree() -> None:
    blob = lambda p: {"path": p, "type": "blob"}  # noqa: E731
    assert build_system_in_tree([blob("Makefile"), blob("CMakeLists.txt")]) == "cmake"  # the engine's preference
    assert build_system_in_tree([blob("configure.ac"), blob("src/a.c")]) == "autotools"
    assert build_system_in_tree([blob("sub/Makefile"), blob("README")]) is None
    assert build_system_in_tree([blob("sub/Makefile"), blob("README")], "sub") == "make"
    assert build_system_in_tree([blob("lib/x.cpp")]) == "plain"
    assert build_system_in_tree([blob("app.sln")]) == "msbuild"


_CRAWLER = """
import sys
from assemblage.db.session import make_engine, make_sessionmaker, sqlite_url
from assemblage.pipeline.crawl import DbEtagCache, run_crawl
from assemblage.sources.github import GithubClient
sessions = make_sessionmaker(make_engine(sqlite_url(sys.argv[1])))
with GithubClient([sys.argv[3]], sys.argv[2], cache=DbEtagCache(sessions)) as c:
    print(run_crawl(sessions, int(sys.argv[4]), c).status, flush=True)
"""


def test_a_crawl_killed_midway_resumes_without_repeating_or_skipping(tmp_path) -> None:
    """kill -9 a crawling process, start another: the same repositories, each page and repository asked once."""
    db = tmp_path / "crawl.sqlite"
    engine = make_engine(sqlite_url(db))
    init_schema(engine)
    sessions = make_sessionmaker(engine)
    repos = [repo("o", f"r{i:03d}") for i in range(130)]
    with FakeGithub(repos) as gh:
        gh.delay = 0.01
        cid = new_crawl(sessions, spec(limit=130))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        argv = [sys.executable, "-c", _CRAWLER, str(db), gh.url, TOKEN, str(cid)]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(gh.requests("/repos/")) < 90 and time.monotonic() < deadline:  # mid-way through page 1
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = len(gh.log)
        assert 90 <= len(gh.requests("/repos/")) < 260, "the crawl was not killed midway"
        again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and again.stdout.strip() == "finished", again.stderr
    with sessions() as s:
        got = [src.name for _, src in accepted_sources(s, cid)]
    assert got == [f"o.r{i:03d}" for i in range(130)]  # nothing skipped, nothing doubled, in order
    fetched = [p for p, st, _ in gh.log if st == 200]
    # each page and each repository request answered 200 once; at most the one in flight at the kill twice
    assert len(fetched) - len(set(fetched)) <= 1, sorted({p for p in fetched if fetched.count(p) > 1})
    assert len(set(fetched)) == 2 + 2 * 130
    assert len(gh.log) - killed_at < 2 + 2 * 130 - 80  # the second process did not start over
