"""GitHub crawls as resumable jobs: a ``github:`` source becomes git sources, one request at a time.

A crawl is a small state machine kept in the database (``crawls``,
``crawl_windows``, ``crawl_repos``; the ETag cache in ``http_cache``). Each
step makes one request and commits what it learnt in the same transaction as
the cursor that says what comes next, so a crawl killed at any point resumes
from its last commit: a page is fetched again only if the crash came between
its answer and the commit (and then it is usually a free ``304``). The steps:

1. while fewer repositories are accepted than ``limit`` and a repository found
   is still a *candidate*: resolve it (its default branch's commit and tree,
   then its file tree) and accept it or skip it with a reason: ``gone``,
   ``no_build_system`` (nothing we can build at the top of its tree, so it is
   never cloned), ``duplicate`` (the same commit or tree as an accepted one: a
   mirror or a copy);
2. else, while a search window is pending: fetch its next page. A window is one
   query (one licence, one ``created`` range); a first page that reports more
   than GitHub's 1000-result cap splits the range in halves, each a new window.
   Forks, mirrors, repositories whose licence is not on the recipe's list and
   those whose clone URL does not start with ``github_clone_prefix`` (a search
   answer must not send workers to ``file://`` paths or other hosts) are
   recorded as skipped at once, without a request;
3. else the crawl is finished: the accepted repositories become git sources of
   the run, each pinned to the commit it was accepted at.

Candidates are resolved before more pages are fetched, so a crawl asks for no
more pages than it needs to reach its limit. The same steps run in a Celery
task on the ``crawl`` queue (which retries after a long rate limit) and
in-process in the embedded mode.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from assemblage.db import models as m
from assemblage.db.session import session_scope
from assemblage.errors import SourceError
from assemblage.recipes.models import GithubSource, GitSource
from assemblage.sources._util import safe_name
from assemblage.sources.github import (
    SEARCH_CAP,
    GithubClient,
    GithubUnavailable,
    RateLimited,
    build_system_in_tree,
    search_url,
    split_range,
)

__all__ = [
    "CrawlOutcome",
    "DbEtagCache",
    "create_crawl",
    "crawl_step",
    "run_crawl",
    "crawl_report",
    "RateLimited",
    "GithubUnavailable",
]

log = logging.getLogger(__name__)

FINAL = frozenset({"finished", "failed"})


@dataclass
class CrawlOutcome:
    status: str  # finished, failed (or running, when stopped by ``max_steps``)
    accepted: list[GitSource] = field(default_factory=list)
    error: str | None = None


class DbEtagCache:
    """The client's :class:`~assemblage.sources.github.EtagCache` in the ``http_cache`` table."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def get(self, url: str) -> tuple[str, str] | None:
        with self.sessions() as s:
            row = s.get(m.HttpCache, url)
            return (row.etag, row.body) if row is not None else None

    def put(self, url: str, etag: str, body: str) -> None:
        with session_scope(self.sessions) as s:
            row = s.get(m.HttpCache, url)
            if row is None:
                s.add(m.HttpCache(url=url, etag=etag[:200], body=body))
            else:
                row.etag, row.body, row.fetched_at = etag[:200], body, m.utcnow()


def create_crawl(s: Session, spec: GithubSource, *, run_id: int | None = None, position: int = 0) -> m.Crawl:
    """A crawl with one window per licence (or one window), in the caller's transaction."""
    q = spec.github
    crawl = m.Crawl(run_id=run_id, position=position, spec=spec.model_dump(mode="json", exclude_none=True))
    s.add(crawl)
    s.flush()
    for lic in [lic.lower() for lic in q.licenses] or [""]:
        base = f"{q.query} license:{lic}".strip() if lic else q.query.strip()
        s.add(_window(crawl.id, base, q.created))
    return crawl


def _window(crawl_id: int, base: str, created: str | None) -> m.CrawlWindow:
    query = f"{base} created:{created}" if created else base
    return m.CrawlWindow(crawl_id=crawl_id, base=base, created=created, query=query)


def _spec(crawl: m.Crawl) -> GithubSource:
    return GithubSource.model_validate(crawl.spec)


def crawl_step(sessions: sessionmaker[Session], crawl_id: int, client: GithubClient) -> bool:
    """Do one step of a crawl (at most one request; see the module docstring). False when it is done."""
    with session_scope(sessions) as s:
        crawl = s.get(m.Crawl, crawl_id)
        if crawl is None or crawl.status in FINAL:
            return False
        spec = _spec(crawl)
        if crawl.status == "pending":
            crawl.status = "running"
        accepted = (
            s.scalar(
                select(func.count())
                .select_from(m.CrawlRepo)
                .where(m.CrawlRepo.crawl_id == crawl_id, m.CrawlRepo.status == "accepted")
            )
            or 0
        )
        crawl.accepted = accepted
        if accepted >= spec.github.limit:
            _finish(crawl)
            return False
        repo = s.scalars(
            select(m.CrawlRepo)
            .where(m.CrawlRepo.crawl_id == crawl_id, m.CrawlRepo.status == "candidate")
            .order_by(m.CrawlRepo.id)
            .limit(1)
        ).first()
        todo = (repo.id, repo.full_name, repo.default_branch) if repo is not None else None
        window = None
        if todo is None:
            w = s.scalars(
                select(m.CrawlWindow)
                .where(m.CrawlWindow.crawl_id == crawl_id, m.CrawlWindow.status == "pending")
                .order_by(m.CrawlWindow.id)
                .limit(1)
            ).first()
            if w is None:
                _finish(crawl)
                return False
            window = (w.id, w.next_url or search_url(client.api_url, w.query), w.pages)
    before = client.stats.requests, client.stats.not_modified

    def bump(s: Session) -> None:  # the request counts, in the transaction that records the answer
        c = s.get_one(m.Crawl, crawl_id)
        c.requests += client.stats.requests - before[0]
        c.not_modified += client.stats.not_modified - before[1]
        c.updated_at = m.utcnow()

    if todo is not None:
        _resolve(sessions, crawl_id, todo, spec, client, bump)
    else:
        assert window is not None
        _page(sessions, crawl_id, window, spec, client, bump)
    return True


def _finish(crawl: m.Crawl) -> None:
    crawl.status, crawl.finished_at = "finished", m.utcnow()


def _resolve(
    sessions, crawl_id: int, todo: tuple[int, str, str], spec: GithubSource, client: GithubClient, bump
) -> None:
    repo_id, full_name, branch = todo
    status, reason, commit, tree, system = "skipped", None, None, None, None
    head = client.branch(full_name, branch)
    if head is None:
        reason = "gone"
    else:
        commit, tree = head
        system = build_system_in_tree(client.tree(full_name, tree), spec.subdir)
        reason = None if system else "no_build_system"
    with session_scope(sessions) as s:
        bump(s)
        repo = s.get(m.CrawlRepo, repo_id)
        if repo is None or repo.status != "candidate":
            return  # another delivery of this step got there first
        if reason is None:
            twin = s.scalars(
                select(m.CrawlRepo.full_name)
                .where(
                    m.CrawlRepo.crawl_id == crawl_id,
                    m.CrawlRepo.status == "accepted",
                    (m.CrawlRepo.commit == commit) | (m.CrawlRepo.tree == tree),
                )
                .limit(1)
            ).first()
            reason = "duplicate" if twin else None
        repo.commit, repo.tree, repo.build_system = commit, tree, system
        repo.status, repo.reason = ("accepted", None) if reason is None else (status, reason)


def _page(
    sessions, crawl_id: int, window: tuple[int, str, int], spec: GithubSource, client: GithubClient, bump
) -> None:
    window_id, url, pages = window
    page = client.get(url)
    body = page.body if isinstance(page.body, dict) else {}
    items = [i for i in (body.get("items") or []) if isinstance(i, dict)]
    total = int(body.get("total_count") or 0)
    wanted = [lic.lower() for lic in spec.github.licenses]
    with session_scope(sessions) as s:
        bump(s)
        w = s.get(m.CrawlWindow, window_id)
        if w is None or w.status != "pending" or (w.next_url or search_url(client.api_url, w.query)) != url:
            return  # this page was recorded by an earlier delivery
        if pages == 0 and total > SEARCH_CAP and w.created and (halves := split_range(w.created)):
            w.status, w.total = "split", total
            for half in halves:
                s.add(_window(crawl_id, w.base, half))
            return
        known = set(
            s.scalars(
                select(m.CrawlRepo.full_name).where(
                    m.CrawlRepo.crawl_id == crawl_id,
                    m.CrawlRepo.full_name.in_([str(i.get("full_name")) for i in items]),
                )
            )
        )
        for item in items:
            full = item.get("full_name")
            if not isinstance(full, str) or "/" not in full or full in known:
                continue
            known.add(full)
            lic = ((item.get("license") or {}).get("key") or "").lower() or None
            clone_url = str(item.get("clone_url") or f"https://github.com/{full}.git")[:1000]
            reason = (
                "fork"
                if item.get("fork")
                else "mirror"
                if item.get("mirror_url")
                else "licence"
                if wanted and lic not in wanted
                else "clone_url"
                if not clone_url.startswith(client.clone_prefix)
                else None
            )
            s.add(
                m.CrawlRepo(
                    crawl_id=crawl_id,
                    full_name=full[:300],
                    clone_url=clone_url,
                    default_branch=str(item.get("default_branch") or "main")[:300],
                    license=lic,
                    status="skipped" if reason else "candidate",
                    reason=reason,
                )
            )
        w.pages, w.total = pages + 1, total
        w.next_url = page.next_url if items else None
        if w.next_url is None:
            w.status = "done"


def accepted_sources(s: Session, crawl_id: int) -> list[tuple[m.CrawlRepo, GitSource]]:
    """The accepted repositories of a crawl as git sources pinned to their commits, in the order found."""
    crawl = s.get_one(m.Crawl, crawl_id)
    spec = _spec(crawl)
    out = []
    for repo in s.scalars(
        select(m.CrawlRepo)
        .where(m.CrawlRepo.crawl_id == crawl_id, m.CrawlRepo.status == "accepted")
        .order_by(m.CrawlRepo.id)
        .limit(spec.github.limit)
    ):
        try:
            src = GitSource.model_validate(
                {
                    "git": repo.clone_url,
                    "ref": repo.commit,
                    "name": safe_name(repo.full_name.replace("/", "."), "repo"),
                    "subdir": spec.subdir,
                }
            )
        except ValueError:
            continue  # a clone URL we would not hand to git
        out.append((repo, src))
    return out


def run_crawl(
    sessions: sessionmaker[Session], crawl_id: int, client: GithubClient, *, max_steps: int | None = None
) -> CrawlOutcome:
    """Step a crawl until it is finished (or ``max_steps``); a permanent failure is recorded on the crawl.

    :class:`RateLimited` and :class:`GithubUnavailable` are raised as they are: the crawl's state is
    committed, so the caller retries later (a Celery retry with a countdown) and it resumes.
    """
    steps = 0
    try:
        while (max_steps is None or steps < max_steps) and crawl_step(sessions, crawl_id, client):
            steps += 1
    except (RateLimited, GithubUnavailable):
        raise
    except SourceError as exc:  # a bad query (422), every token refused: retrying will not help
        fail_crawl(sessions, crawl_id, str(exc))
    with sessions() as s:
        crawl = s.get(m.Crawl, crawl_id)
        if crawl is None:
            return CrawlOutcome("failed", error="the crawl is gone")
        accepted = [src for _, src in accepted_sources(s, crawl_id)] if crawl.status == "finished" else []
        return CrawlOutcome(crawl.status, accepted, crawl.error)


def fail_crawl(sessions: sessionmaker[Session], crawl_id: int, error: str) -> None:
    with session_scope(sessions) as s:
        crawl = s.get(m.Crawl, crawl_id)
        if crawl is not None and crawl.status not in FINAL:
            crawl.status, crawl.error, crawl.finished_at = "failed", error[:4000], m.utcnow()


def crawl_report(s: Session, crawl_id: int) -> dict:
    """What a crawl did: requests, 304s, windows, repositories by verdict (``assemblage crawl --json``)."""
    crawl = s.get_one(m.Crawl, crawl_id)
    verdicts = dict(
        s.execute(
            select(func.coalesce(m.CrawlRepo.reason, m.CrawlRepo.status), func.count())
            .where(m.CrawlRepo.crawl_id == crawl_id)
            .group_by(func.coalesce(m.CrawlRepo.reason, m.CrawlRepo.status))
        ).all()
    )
    windows = dict(
        s.execute(
            select(m.CrawlWindow.status, func.count())
            .where(m.CrawlWindow.crawl_id == crawl_id)
            .group_by(m.CrawlWindow.status)
        ).all()
    )
    return {
        "query": crawl.spec.get("github", {}).get("query"),
        "status": crawl.status,
        "error": crawl.error,
        "requests": crawl.requests,
        "not_modified": crawl.not_modified,
        "windows": windows,
        "repositories": verdicts,
        "accepted": [
            {
                "repository": repo.full_name,
                "git": src.git,
                "commit": repo.commit,
                "build_system": repo.build_system,
                "license": repo.license,
            }
            for repo, src in accepted_sources(s, crawl_id)
        ],
    }


def make_client(
    settings, sessions: sessionmaker[Session] | None, *, max_wait: float | None = None, transport=None
) -> GithubClient:
    """A client from the settings' tokens and endpoint, with the database's ETag cache when given."""
    token = settings.github_token.get_secret_value() if settings.github_token is not None else ""
    return GithubClient(
        _split_tokens(token),
        settings.github_api_url,
        cache=DbEtagCache(sessions) if sessions is not None else None,
        max_wait=settings.github_max_wait if max_wait is None else max_wait,
        transport=transport,
        clone_prefix=settings.github_clone_prefix,
    )


def _split_tokens(raw: str) -> Iterable[str]:
    return [t.strip() for t in raw.split(",") if t.strip()]
