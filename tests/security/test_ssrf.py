"""Issue 8, item 5: server-side request forgery through archive and git URLs.

The attack: archive and git URLs to loopback, link-local (169.254.169.254), private
ranges and the service's own ports were fetched, and the error messages told open
ports from closed ones. Every server below is real and listens on 127.0.0.0/8
(127.0.0.2 stands for an allowed private mirror); git is the real git. The only
stand-in is the resolver of the test process, where a test needs a name that
resolves differently from one connection to the next (DNS rebinding) or that
only our resolver knows (to show git connects where we checked, not where it
would resolve by itself).
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from assemblage.errors import FetchRefusedError, SourceError
from assemblage.recipes.models import ArchiveSource, GitSource
from assemblage.settings import load_settings
from assemblage.sources import FetchPolicy, fetch_source
from tests.conftest import need
from tests.integration.service_stack import REDIS_URL, S3_ENDPOINT, Stack
from tests.security.support import (
    Canary,
    RawServer,
    RedirectServer,
    StaticServer,
    assert_nowhere,
    bare_for_http,
    closed_port,
    edit_recipe_text,
    git,
    make_repo,
    servers,
    tarball,
)

pytestmark = pytest.mark.integration

NON_PUBLIC = [
    "127.0.0.1",
    "127.1.2.3",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:169.254.169.254]",
    "0.0.0.0",
    "169.254.169.254",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "224.0.0.1",
    "[fe80::1]",
    "[fc00::1]",
    "[64:ff9b::a9fe:a9fe]",
    "[2002:a9fe:a9fe::1]",
    "localhost",
]


def policy(tmp_path: Path, *allow: str, api_port: int = 8000) -> FetchPolicy:
    """The service's policy, built from settings as the workers build it."""
    settings = load_settings(
        environment="test",
        secret_key="x" * 32,
        source_root=tmp_path,
        fetch_allow=allow,
        database_url="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        broker_url=f"{REDIS_URL}/0",
        s3_endpoint_url=S3_ENDPOINT,
        api_port=api_port,
        fetch_timeout=30,
    )
    return FetchPolicy.for_service(settings)


@pytest.fixture
def site(tmp_path: Path):
    """A canary project as a tarball and as a git repository a static server can serve."""
    need("git")
    canary = Canary()
    work = tmp_path / "work"
    make_repo(work, str(canary))
    www = tmp_path / "www"
    www.mkdir()
    bare_for_http(work, www / "repo.git")
    tarball(www / "lib-1.0.tar.gz", work, "lib-1.0")
    shutil.rmtree(work / ".git")
    return www, canary


def fetch(url: str, pol: FetchPolicy, tmp_path: Path, *, git_url: bool = False, timeout: float = 30):
    spec = GitSource(git=url) if git_url else ArchiveSource(archive=url)
    return fetch_source(spec, base=tmp_path, cache=tmp_path / "cache", policy=pol, timeout=timeout)


# ------------------------------------------------------------------ the policy, against real servers


def test_non_public_addresses_are_refused_before_connecting(tmp_path, site):
    www, _ = site
    pol = policy(tmp_path)
    with StaticServer(www, "127.0.0.1") as web:
        for host in NON_PUBLIC:
            for url, is_git in (
                (f"http://{host}:{web.port}/lib-1.0.tar.gz", False),
                (f"http://{host}:{web.port}/repo.git", True),
                (f"git://{host}:{web.port}/repo.git", True),
            ):
                started = time.monotonic()
                with pytest.raises(FetchRefusedError, match="refused by the service's fetch policy"):
                    fetch(url, pol, tmp_path, git_url=is_git)
                assert time.monotonic() - started < 5, url  # refused, not tried until a timeout
        assert web.hits == []  # nothing reached the server, whatever the spelling of loopback
    # the same fetches work where a private mirror is allowed: the refusals above were the policy's
    with StaticServer(www, "127.0.0.2") as mirror:
        allowed = policy(tmp_path, "127.0.0.2")
        assert (fetch(mirror.url("/lib-1.0.tar.gz"), allowed, tmp_path).path / "main.c").exists()
        assert (fetch(mirror.url("/repo.git"), allowed, tmp_path, git_url=True).path / "main.c").exists()
        assert mirror.hits


def test_redirects_are_checked_like_the_first_request(tmp_path, site):
    www, _ = site
    pol = policy(tmp_path, "127.0.0.2", "127.0.0.3")
    with servers(StaticServer(www, "127.0.0.1"), StaticServer(www, "127.0.0.3")) as (target, other_mirror):
        with RedirectServer(target.url(""), "127.0.0.2") as hop:
            with pytest.raises(FetchRefusedError):
                fetch(hop.url("/lib-1.0.tar.gz"), pol, tmp_path)
            with pytest.raises(SourceError, match="redirect"):  # git does not follow redirects at all
                fetch(hop.url("/repo.git"), pol, tmp_path, git_url=True)
            assert hop.hits and target.hits == []
        with RedirectServer(other_mirror.url(""), "127.0.0.2") as hop:  # allowed to allowed: followed
            assert (fetch(hop.url("/lib-1.0.tar.gz"), pol, tmp_path).path / "main.c").exists()
            assert other_mirror.hits == ["/lib-1.0.tar.gz"]


def _resolver(monkeypatch, answers: dict[str, list[str]]) -> list[str]:
    """The test process's resolver answers ``answers[name]`` in turn (the last one from then on)."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def fake(host, port, *args, **kwargs):
        if isinstance(host, str) and host in answers:
            asked.append(host)
            queue = answers[host]
            address = queue.pop(0) if len(queue) > 1 else queue[0]
            return real(address, port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return asked


def test_dns_rebinding_between_two_connections_is_caught(tmp_path, site, monkeypatch):
    """The name first resolves to the allowed mirror, which redirects to itself; then it resolves to loopback."""
    www, _ = site
    pol = policy(tmp_path, "127.0.0.2")
    with StaticServer(www, "127.0.0.1") as inside:
        with RedirectServer(f"http://rebind.test:{inside.port}", "127.0.0.2") as mirror:
            asked = _resolver(monkeypatch, {"rebind.test": ["127.0.0.2", "127.0.0.1"]})
            url = f"http://rebind.test:{mirror.port}/lib-1.0.tar.gz"
            with pytest.raises(FetchRefusedError):
                fetch(url, pol, tmp_path)
            assert mirror.hits == ["/lib-1.0.tar.gz"] and inside.hits == []
            assert asked == ["rebind.test", "rebind.test"]  # checked at each connection, not once up front


def test_git_connects_only_to_the_address_that_was_checked(tmp_path, site, monkeypatch):
    """``mirror.test`` resolves only in this process: git can fetch it only through the address we pinned."""
    www, canary = site
    with StaticServer(www, "127.0.0.2") as mirror:
        url = f"http://mirror.test:{mirror.port}/repo.git"
        alone = subprocess.run(["git", "ls-remote", url], capture_output=True, text=True, timeout=60)
        assert alone.returncode != 0 and "resolve" in alone.stderr.lower()  # git cannot resolve it by itself
        _resolver(monkeypatch, {"mirror.test": ["127.0.0.2"]})
        got = fetch(url, policy(tmp_path, "127.0.0.2"), tmp_path, git_url=True)
        assert str(canary) in (got.path / "main.c").read_text()
        hits = len(mirror.hits)
        _resolver(monkeypatch, {"mirror.test": ["127.0.0.1"]})
        with pytest.raises(FetchRefusedError):
            fetch(url.replace("repo.git", "repo.git/"), policy(tmp_path, "127.0.0.2"), tmp_path / "2", git_url=True)
        assert len(mirror.hits) == hits


def test_git_protocol_goes_to_the_checked_address(tmp_path, site, monkeypatch):
    www, canary = site
    port = closed_port("127.0.0.2")
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--listen=127.0.0.2",
            f"--port={port}",
            "--export-all",
            f"--base-path={www}",
            "--reuseaddr",
            str(www),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.2", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "git daemon did not start"
                time.sleep(0.1)
        _resolver(monkeypatch, {"mirror.test": ["127.0.0.2"]})
        got = fetch(f"git://mirror.test:{port}/repo.git", policy(tmp_path, "127.0.0.2"), tmp_path, git_url=True)
        assert str(canary) in (got.path / "main.c").read_text()
        with pytest.raises(FetchRefusedError):
            fetch(f"git://127.0.0.1:{port}/repo.git", policy(tmp_path, "127.0.0.2"), tmp_path, git_url=True)
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def test_dumb_http_alternates_to_a_refused_address_are_not_followed(tmp_path, site):
    """A repository on the allowed mirror whose objects live elsewhere (objects/info/http-alternates)."""
    www, _ = site
    hollow = tmp_path / "mirror" / "hollow.git"
    hollow.parent.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", "--shared", str(www / "repo.git"), str(hollow)], check=True)
    git("update-server-info", cwd=hollow)
    (hollow / "objects" / "info" / "alternates").unlink()
    with StaticServer(www, "127.0.0.1") as inside, StaticServer(hollow.parent, "127.0.0.2") as mirror:
        (hollow / "objects" / "info" / "http-alternates").write_text(inside.url("/repo.git/objects") + "\n")
        with pytest.raises(SourceError):
            fetch(mirror.url("/hollow.git"), policy(tmp_path, "127.0.0.2"), tmp_path, git_url=True)
        assert mirror.hits and inside.hits == []


def test_the_services_own_ports_stay_refused_on_an_allowed_network(tmp_path, site):
    www, _ = site
    api_port = closed_port()
    pol = policy(tmp_path, "127.0.0.0/8", api_port=api_port)
    redis_port = int(REDIS_URL.rsplit(":", 1)[1])
    s3_port = int(S3_ENDPOINT.rsplit(":", 1)[1])
    for port in (5432, redis_port, s3_port, api_port):
        for host in ("127.0.0.1", "127.0.0.2", "localhost"):
            with pytest.raises(FetchRefusedError):
                fetch(f"http://{host}:{port}/x.tar.gz", pol, tmp_path)
            with pytest.raises(FetchRefusedError):
                fetch(f"http://{host}:{port}/x.git", pol, tmp_path, git_url=True)
    with StaticServer(www, "127.0.0.1") as mirror:  # the same network on another port is an allowed mirror
        assert (fetch(mirror.url("/lib-1.0.tar.gz"), pol, tmp_path).path / "main.c").exists()


def test_errors_do_not_tell_open_ports_from_closed_ones(tmp_path):
    need("git")
    pol = dataclasses.replace(policy(tmp_path, "127.0.0.0/8"), timeout=4)
    with servers(RawServer("silent"), RawServer("reset"), RawServer("banner")) as peers:
        ports = [closed_port(), *(p.port for p in peers)]
        for is_git, path in ((False, "/x.tar.gz"), (True, "/x.git")):
            messages = set()
            for port in ports:
                with pytest.raises(SourceError) as info:
                    fetch(f"http://127.0.0.1:{port}{path}", pol, tmp_path, git_url=is_git)
                messages.add(str(info.value).replace(str(port), "PORT"))
            assert len(messages) == 1, messages
            assert "no usable" in messages.pop()
        assert all(p.hits for p in peers)


# ------------------------------------------------------------------ the service


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    need("git", "gcc-12")
    base = tmp_path_factory.mktemp("ssrf")
    canary = Canary()
    work = base / "work"
    make_repo(work, str(canary))
    www = base / "www"
    www.mkdir()
    bare_for_http(work, www / "repo.git")
    tarball(www / "lib-1.0.tar.gz", work, "lib-1.0")
    with StaticServer(www, "127.0.0.1") as web, Stack(base / "stack", sweep_interval=1) as st:
        st.start_api()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("ASSEMBLAGE_API_PORT", str(st.api_port))  # the workers learn where the API listens
            st.start_worker("w1")
        yield st, web, canary


def ssrf_recipe(name: str, *sources: str) -> str:
    return (
        f"name: {name}\nsources:\n"
        + "".join(f"  - {s}\n" for s in (*sources, 'path: "recipes/samples/calc"'))
        + "matrix:\n  platform: [linux]\n  arch: [x86_64]\n  toolchain: [gcc-12]\n  opt: [O0]\n"
    )


def hostile(host: str, port: int) -> list[str]:
    return [
        f'archive: "http://{host}:{port}/lib-1.0.tar.gz"',
        f'git: "http://{host}:{port}/repo.git"',
        f'git: "git://{host}:{port}/repo.git"',
    ]


@pytest.mark.usefixtures("services")
def test_the_service_refuses_what_resolves_to_loopback(service):
    st, web, canary = service
    submit = st.client(st.token("submit"))
    reader = st.client(st.token("read"))
    yaml = {"Content-Type": "application/yaml"}
    answers = []
    # literal addresses are refused by the API at once
    for literal, port in (
        ("169.254.169.254", 80),
        ("[::ffff:127.0.0.1]", web.port),
        ("10.1.2.3", 443),
        ("127.0.0.1", st.api_port),
    ):
        r = submit.post("/runs", content=ssrf_recipe("ssrf-literal", *hostile(literal, port)), headers=yaml)
        answers.append(r.text)
        assert r.status_code == 422, (literal, r.text)
        assert [p["location"] for p in r.json()["errors"]] == ["sources[0].archive", "sources[1].git", "sources[2].git"]
    # names pass the API and are refused by the worker, on the address they resolve to
    r = submit.post("/runs", content=ssrf_recipe("ssrf", *hostile("localhost", web.port)), headers=yaml)
    assert r.status_code == 201, r.text
    first = st.wait_run(reader, r.json()["id"], timeout=180)
    # literal addresses that an older API stored are refused by the worker too
    r = submit.post("/runs", content=ssrf_recipe("ssrf-edited", *hostile("localhost", web.port)), headers=yaml)
    assert r.status_code == 201
    edit_recipe_text(
        st,
        r.json()["id"],
        ssrf_recipe(
            "ssrf-edited",
            'archive: "http://169.254.169.254/latest/meta-data/x.tar.gz"',
            f'git: "http://[::ffff:127.0.0.1]:{web.port}/repo.git"',
            f'archive: "http://127.0.0.1:{web.port}/lib-1.0.tar.gz"',
        ),
    )
    second = st.wait_run(reader, r.json()["id"], timeout=180)
    for run in (first, second):
        assert run["builds"] == {"skipped": 3, "succeeded": 1}, run
        cov = reader.get(f"/runs/{run['id']}/coverage").json()
        answers.append(str(cov))
        refused = [c["message"] for c in cov["cells"] if c["status"] == "skipped"]
        assert len(refused) == 3 and all("refused by the service's fetch policy" in m for m in refused), refused
    assert web.hits == []
    answers += [reader.get(f"/runs/{first['id']}").text, reader.get("/binaries").text]
    assert_nowhere(st, [str(canary)], answers=answers)
