"""Issue 8, item 10: credentials in source URLs are never displayed or logged.

The attack: ``https://user:token@host/...`` was shown to every read token in
``source`` fields and errors. Here a real git host on loopback wants HTTP basic
credentials (as a forge does for a token), the recipe carries them in the URL,
and other sources carry secrets in failing URLs and in query strings. Through the
real service and the real CLI, each secret may be stored only where a later fetch
needs it (the recipe text and the source's spec, which no API answer returns) and
must appear in no API answer, no other column, no object of the store, no log.
"""

from __future__ import annotations

import sqlite3
import subprocess

import pytest

from tests.conftest import need
from tests.integration.service_stack import Stack, assemblage_cmd
from tests.security.support import (
    AuthGitServer,
    StaticServer,
    bare_for_http,
    find_in_bucket,
    find_in_files,
    make_repo,
    new_canary,
    tarball,
)

pytestmark = pytest.mark.integration

# where a secret may rest: what a later fetch (a rebuild, another worker) reads, and that no answer returns
STORED_FOR_FETCHING = {"recipes.text", "sources.spec", "sources.pinned_spec"}


class Secrets:
    def __init__(self) -> None:
        self.git_token = new_canary("gittoken")  # the password of a git URL that works
        self.git_user = new_canary("gituser")  # a token as the user name alone, which this host refuses
        self.bad_token = new_canary("badtoken")  # in a git URL that fails
        self.query_token = new_canary("querytoken")  # ?access_token= of an archive that works
        self.archive_password = new_canary("archivepw")  # user:password of an archive URL that fails

    def all(self) -> list[str]:
        return [self.git_token, self.git_user, self.bad_token, self.query_token, self.archive_password]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    need("git", "gcc-12")
    base = tmp_path_factory.mktemp("credentials")
    secrets = Secrets()
    work = base / "work"
    make_repo(work, "asm-credentials-marker")
    www = base / "www"
    www.mkdir()
    bare_for_http(work, www / "private.git")
    tarball(www / "lib-1.0.tar.gz", work, "lib-1.0")
    with (
        AuthGitServer(www, f"builder:{secrets.git_token}", "127.0.0.2") as forge,
        StaticServer(www, "127.0.0.2") as files,
    ):
        sources = [
            f'git: "{forge.url("/private.git", userinfo=f"builder:{secrets.git_token}@")}"',
            f'git: "{forge.url("/private.git", userinfo=f"{secrets.git_user}@")}"',
            f'git: "{forge.url("/missing.git", userinfo=f"builder:{secrets.bad_token}@")}"',
            f'archive: "{files.url("/lib-1.0.tar.gz")}?access_token={secrets.query_token}"',
            f'archive: "{files.url("/gone.tar.gz", userinfo=f"me:{secrets.archive_password}@")}"',
        ]
        text = (
            "name: creds\nsources:\n"
            + "".join(f"  - {s}\n" for s in sources)
            + "matrix:\n  platform: [linux]\n  arch: [x86_64]\n  toolchain: [gcc-12]\n  opt: [O0]\n"
        )
        yield base, secrets, text, forge


def columns_holding(url: str, needle: str) -> set[str]:
    """``table.column`` of every column (as text) that holds ``needle``, in a PostgreSQL or SQLite database."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    found = set()
    try:
        with engine.connect() as c:
            sqlite = c.dialect.name == "sqlite"
            for table in inspect(c).get_table_names():
                for col in inspect(c).get_columns(table):
                    expr = f'CAST("{col["name"]}" AS TEXT)' if sqlite else f'"{col["name"]}"::text'
                    if c.execute(
                        text(f'SELECT 1 FROM "{table}" WHERE {expr} LIKE :n LIMIT 1'), {"n": f"%{needle}%"}
                    ).first():
                        found.add(f"{table}.{col['name']}")
    finally:
        engine.dispose()
    return found


def check_stored(url: str, secrets: Secrets) -> None:
    for secret in secrets.all():
        held = columns_holding(url, secret)
        assert held and held <= STORED_FOR_FETCHING, (secret, held)


@pytest.mark.usefixtures("services")
def test_the_service_never_shows_credentials(hosts):
    base, secrets, text, forge = hosts
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASSEMBLAGE_FETCH_ALLOW", "127.0.0.2")
        with Stack(base / "stack") as st:
            st.start_api()
            st.start_worker("w1")
            submit = st.client(st.token("submit"))
            reader = st.client(st.token("read"))
            r = submit.post("/runs", content=text, headers={"Content-Type": "application/yaml"})
            assert r.status_code == 201, r.text
            run = st.wait_run(reader, r.json()["id"], timeout=240)
            assert run["builds"] == {"succeeded": 2, "skipped": 3}, run
            assert any(h.startswith("401 ") for h in forge.hits)  # the forge asked, git answered with the URL's
            answers = [r.text, str(run)]
            lock = reader.get(f"/runs/{run['id']}/lock")
            assert lock.status_code == 200 and "***@" in lock.text
            answers.append(lock.text)
            cov = reader.get(f"/runs/{run['id']}/coverage").json()
            answers.append(str(cov))
            for c in cov["cells"]:
                answers.append(reader.get(f"/builds/{c['build_id']}").text)
                log = reader.get(f"/builds/{c['build_id']}/log")
                answers.append(log.text if log.status_code == 200 else "")
            binaries = reader.get("/binaries", params={"run": run["id"]}).json()["items"]
            assert len(binaries) == 2
            for b in binaries:
                detail = reader.get(f"/binaries/{b['id']}").json()
                answers.append(str(detail))
                answers.append(reader.get(f"/binaries/{b['id']}/functions").text)
            shown = {c["message"] for c in cov["cells"] if c["status"] == "skipped"}
            assert all("***@" in m for m in shown), shown  # the failures still say which URL, redacted
            sources = {detail["source"] for detail in (reader.get(f"/binaries/{b['id']}").json() for b in binaries)}
            assert sum("***@" in s or "access_token=***" in s for s in sources) == 2, sources
            leaks = [f"API answer: {s}" for s in secrets.all() for a in answers if s in a]
            leaks += find_in_bucket(st.bucket, secrets.all())
            leaks += find_in_files(st.root, secrets.all())  # the API's and workers' logs, caches, scratch
            assert not leaks, "\n".join(leaks[:10])
            check_stored(st.database_url, secrets)


def test_the_cli_never_shows_credentials(hosts):
    base, secrets, text, _ = hosts
    recipe = base / "creds.yaml"
    recipe.write_text(text)
    out = base / "embedded"
    r = subprocess.run(
        assemblage_cmd("build", str(recipe), "--out", str(out)), capture_output=True, text=True, timeout=300
    )
    printed = r.stdout + r.stderr
    assert r.returncode == 9, printed  # finished, with the failing sources' builds skipped
    assert "***@" in printed  # the summary names the failed sources, redacted
    assert not [s for s in secrets.all() if s in printed], printed
    check_stored(f"sqlite:///{out / 'dataset.sqlite'}", secrets)
    lock = subprocess.run(assemblage_cmd("lock", str(out)), capture_output=True, text=True, timeout=120)
    assert lock.returncode == 0 and "***@" in lock.stdout, lock.stderr
    assert not [s for s in secrets.all() if s in lock.stdout + lock.stderr]  # a lock is published with datasets
    with sqlite3.connect(out / "dataset.sqlite") as db:
        assert {row[0] for row in db.execute("SELECT status FROM builds")} == {"succeeded", "skipped"}
    leaks = find_in_files(out, secrets.all(), skip=[out / "dataset.sqlite"])
    assert not leaks, leaks


def test_archive_credentials_go_to_their_host_only(hosts, tmp_path):
    """user:password@ of an archive URL authenticates the download, and does not follow a redirect elsewhere."""
    from assemblage.recipes.models import ArchiveSource
    from assemblage.sources import fetch_source
    from tests.security.support import RedirectServer

    base, secrets, _, _ = hosts
    www = base / "www"
    with AuthGitServer(www, f"me:{secrets.archive_password}", "127.0.0.2") as host:
        url = host.url("/lib-1.0.tar.gz", userinfo=f"me:{secrets.archive_password}@")
        got = fetch_source(ArchiveSource(archive=url), base=tmp_path, cache=tmp_path / "c")
        assert (got.path / "main.c").exists() and got.url == host.url("/lib-1.0.tar.gz", userinfo="***@")
    with StaticServer(www, "127.0.0.3") as elsewhere, RedirectServer(elsewhere.url(""), "127.0.0.2") as hop:
        url = hop.url("/lib-1.0.tar.gz", userinfo=f"me:{secrets.archive_password}@")
        fetch_source(ArchiveSource(archive=url), base=tmp_path, cache=tmp_path / "c2")
        assert elsewhere.hits == ["/lib-1.0.tar.gz"]
        assert "Authorization" not in elsewhere.headers[0]
