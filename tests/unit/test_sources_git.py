"""Git sources against local repositories made by the tests: ref resolution, pinning, reuse, hostile names."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from assemblage.errors import SourceError
from assemblage.recipes.models import GitSource
from assemblage.sources import fetch_source, source_label, source_name
from assemblage.sources.git import fetch_git

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def _git(repo: Path, *args: str, date: str | None = None) -> str:
    env = dict(_ENV)
    if date:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env, timeout=60
    ).stdout.strip()


def _commit(repo: Path, files: dict[str, str], message: str, date: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message, date=date)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """main: c1 -> c2 (tag v1.0, annotated) -> c3; branch 'feature' from c1 -> c4; lightweight tag 'light' on c4."""
    root = tmp_path_factory.mktemp("repos") / "demo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    c1 = _commit(root, {"main.c": "int v = 1;\n"}, "one", "2021-03-04T05:06:07+00:00")
    c2 = _commit(root, {"main.c": "int v = 2;\n", "LICENSE": APACHE}, "two", "2022-01-02T03:04:05+00:00")
    _git(root, "tag", "-a", "v1.0", "-m", "release 1.0", date="2022-01-02T03:04:05+00:00")
    c3 = _commit(root, {"main.c": "int v = 3;\n", "lib/sub.c": "int s;\n"}, "three", "2023-06-07T08:09:10+00:00")
    _git(root, "checkout", "-q", "-b", "feature", c1)
    c4 = _commit(root, {"feature.c": "int f;\n"}, "four", "2021-05-05T05:05:05+00:00")
    _git(root, "tag", "light")
    _git(root, "checkout", "-q", "main")
    return {"path": root, "c1": c1, "c2": c2, "c3": c3, "c4": c4}


def _fetch(repo: dict, ref: str | None, cache: Path, **kw):
    return fetch_source(GitSource(git=str(repo["path"]), ref=ref, **kw), base=Path.cwd(), cache=cache)


def test_default_branch(repo: dict, tmp_path: Path) -> None:
    got = _fetch(repo, None, tmp_path)
    assert got.kind == "git" and got.commit == repo["c3"]
    assert (got.path / "main.c").read_text() == "int v = 3;\n"
    assert not (got.path / ".git").exists()
    assert got.last_update == datetime(2023, 6, 7, 8, 9, 10, tzinfo=UTC)
    assert got.license == "Apache-2.0"
    assert got.url == repo["path"].as_uri()
    assert tmp_path in got.path.parents


def test_branch(repo: dict, tmp_path: Path) -> None:
    got = _fetch(repo, "feature", tmp_path)
    assert got.commit == repo["c4"]
    assert (got.path / "feature.c").exists() and (got.path / "main.c").read_text() == "int v = 1;\n"
    assert got.version == "light"  # a tag points at it


def test_annotated_tag(repo: dict, tmp_path: Path) -> None:
    got = _fetch(repo, "v1.0", tmp_path)
    assert got.commit == repo["c2"]  # the commit, not the tag object
    assert got.version == "v1.0"
    assert (got.path / "main.c").read_text() == "int v = 2;\n"


def test_lightweight_tag_and_full_refname(repo: dict, tmp_path: Path) -> None:
    assert _fetch(repo, "light", tmp_path).commit == repo["c4"]
    assert _fetch(repo, "refs/tags/v1.0", tmp_path).commit == repo["c2"]


def test_full_commit_not_at_any_ref(repo: dict, tmp_path: Path) -> None:
    got = _fetch(repo, repo["c1"], tmp_path)
    assert got.commit == repo["c1"] and got.version is None
    assert (got.path / "main.c").read_text() == "int v = 1;\n"
    assert not (got.path / "feature.c").exists()


def test_abbreviated_commit(repo: dict, tmp_path: Path) -> None:
    assert _fetch(repo, repo["c1"][:10], tmp_path).commit == repo["c1"]  # not advertised: full fetch
    assert _fetch(repo, repo["c3"][:8], tmp_path).commit == repo["c3"]  # advertised (main)


def test_unknown_ref_names_what_exists(repo: dict, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"no branch, tag or commit named 'nope'.*feature.*v1.0"):
        _fetch(repo, "nope", tmp_path)
    with pytest.raises(SourceError, match="not in the repository"):
        _fetch(repo, "abcdef1234", tmp_path)


def test_dash_refs_and_urls_are_refused(repo: dict, tmp_path: Path) -> None:
    # the recipe model refuses them; the fetcher refuses them again for callers that bypass it
    with pytest.raises(SourceError, match="ref"):
        fetch_git(str(repo["path"]), "--upload-pack=touch pwned", label="x", name="x", cache=tmp_path, timeout=60)
    with pytest.raises(SourceError, match="'-'"):
        fetch_git("--upload-pack=touch pwned", None, label="x", name="x", cache=tmp_path, timeout=60)
    with pytest.raises(SourceError, match="transport"):
        fetch_git("ext::sh -c touch% pwned", None, label="x", name="x", cache=tmp_path, timeout=60)
    assert not (Path.cwd() / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_same_url_and_ref_reuse_the_checkout_without_the_network(repo: dict, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    shutil.copytree(repo["path"], clone)
    first = fetch_source(GitSource(git=str(clone), ref="main"), base=tmp_path, cache=tmp_path / "cache")
    shutil.rmtree(clone)  # the "remote" is gone
    again = fetch_source(GitSource(git=str(clone), ref="main"), base=tmp_path, cache=tmp_path / "cache")
    assert again == first
    # relative paths start from base
    same = fetch_source(GitSource(git="clone", ref="main"), base=tmp_path, cache=tmp_path / "cache")
    assert same.path == first.path and same.label == "clone"
    with pytest.raises(SourceError, match="no such repository"):
        fetch_source(GitSource(git="clone", ref="feature"), base=tmp_path, cache=tmp_path / "cache")


def test_two_refs_of_one_commit_share_one_tree(repo: dict, tmp_path: Path) -> None:
    a = _fetch(repo, "main", tmp_path)
    b = _fetch(repo, repo["c3"], tmp_path)
    assert a.path == b.path
    trees = list((tmp_path / "git" / "trees").iterdir())
    assert len([t for t in trees if not t.name.startswith(".tmp")]) == 1


def test_subdir_and_names(repo: dict, tmp_path: Path) -> None:
    got = _fetch(repo, "main", tmp_path, subdir="lib")
    assert got.path.name == "lib" and (got.path / "sub.c").exists()
    spec = GitSource(git="https://github.com/madler/zlib.git", ref="v1.3.1")
    assert source_label(spec) == "https://github.com/madler/zlib.git"
    assert source_name(spec) == "zlib"
    assert source_name(GitSource(git="git@github.com:madler/zlib.git")) == "zlib"
    assert source_name(GitSource(git="x", name="my lib!")) == "my-lib"


HOSTILE_NAMES = [
    "$(touch pwned)",
    "a;touch pwned;b",
    "`touch pwned`",
    "with space.c",
    "new\nline.c",
    "-rf",
    "--upload-pack=touch pwned",
    "quote'\"s",
    "back\\slash",
    "glob*?[x]",
]


def test_metacharacter_file_names_arrive_intact_and_nothing_runs(tmp_path: Path) -> None:
    src = tmp_path / "hostile repo $(touch pwned) ;"
    src.mkdir()
    _git(src, "init", "-q", "-b", "main")
    files = {name: f"content of {name!r}\n" for name in HOSTILE_NAMES}
    files["dir $(touch pwned)/`touch pwned`.c"] = "nested\n"
    for name, text in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    # a hook in the source repository must not travel, and ours are disabled anyway
    hook = src / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path}/pwned-hook\n")
    hook.chmod(0o755)
    _git(src, "add", "-A")
    _git(src, "commit", "-q", "-m", "hostile", date="2024-01-01T00:00:00+00:00")
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        got = fetch_source(GitSource(git=str(src)), base=tmp_path, cache=tmp_path / "cache")
    finally:
        os.chdir(cwd)
    for name, text in files.items():
        assert (got.path / name).read_text() == text, name
    found = {str(p.relative_to(got.path)) for p in got.path.rglob("*") if p.is_file()}
    assert found == set(files)
    pwned = [p for p in tmp_path.rglob("pwned*") if p.is_file()] + list(cwd.glob("pwned*"))
    assert pwned == []


def test_git_symlinks_stay_links(tmp_path: Path) -> None:
    src = tmp_path / "links"
    src.mkdir()
    _git(src, "init", "-q", "-b", "main")
    (src / "real.h").write_text("#define X 1\n")
    os.symlink("real.h", src / "alias.h")
    os.symlink("/etc/passwd", src / "outside")
    _git(src, "add", "-A")
    _git(src, "commit", "-q", "-m", "links")
    got = fetch_source(GitSource(git=str(src)), base=tmp_path, cache=tmp_path / "cache")
    assert os.readlink(got.path / "alias.h") == "real.h"
    assert os.readlink(got.path / "outside") == "/etc/passwd"  # a link, never a copy of the file


def test_empty_repository(tmp_path: Path) -> None:
    src = tmp_path / "empty"
    src.mkdir()
    _git(src, "init", "-q")
    with pytest.raises(SourceError, match="no HEAD"):
        fetch_source(GitSource(git=str(src)), base=tmp_path, cache=tmp_path / "cache")


def test_remote_that_does_not_answer(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="ls-remote"):
        fetch_source(GitSource(git="http://127.0.0.1:9/none.git"), base=tmp_path, cache=tmp_path / "c", timeout=30)


APACHE = """
                                 Apache License
                           Version 2.0, January 2004
                        http://www.apache.org/licenses/
"""


def test_inherited_git_variables_do_not_redirect_us(
    repo: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_WORK_TREE", str(tmp_path / "elsewhere-tree"))
    assert _fetch(repo, "main", tmp_path / "cache").commit == repo["c3"]
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "elsewhere-tree").exists()


def test_concurrent_fetches_make_one_checkout(repo: dict, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda ref: _fetch(repo, ref, tmp_path), ["main", "main", repo["c3"], "v1.0"]))
    assert len({r.path for r in results[:3]}) == 1
    trees = [t.name for t in (tmp_path / "git" / "trees").iterdir()]
    assert len(trees) == 2, trees  # c3 and c2, no leftovers


# ------------------------------------------------------------------ submodules


def test_submodules_only_when_asked_and_pinned(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    _git(lib, "init", "-q", "-b", "main")
    pinned = _commit(lib, {"lib.c": "int old;\n"}, "lib one", "2020-01-01T00:00:00+00:00")
    deep = tmp_path / "deep"
    deep.mkdir()
    _git(deep, "init", "-q", "-b", "main")
    _commit(deep, {"deep.h": "#define DEEP 1\n"}, "deep", "2020-01-01T00:00:00+00:00")
    _git(lib, "-c", "protocol.file.allow=always", "submodule", "add", "-q", "../deep", "third/deep")
    pinned = _commit(lib, {}, "add deep", "2020-01-02T00:00:00+00:00")
    app = tmp_path / "app"
    app.mkdir()
    _git(app, "init", "-q", "-b", "main")
    _commit(app, {"main.c": "int main;\n"}, "app", "2020-02-01T00:00:00+00:00")
    _git(app, "-c", "protocol.file.allow=always", "submodule", "add", "-q", "../lib", "vendor/lib")
    _commit(app, {}, "add lib", "2020-02-02T00:00:00+00:00")
    _commit(lib, {"lib.c": "int new;\n"}, "lib moves on", "2021-01-01T00:00:00+00:00")
    cache = tmp_path / "cache"

    plain = fetch_source(GitSource(git=str(app)), base=tmp_path, cache=cache)
    assert not (plain.path / "vendor" / "lib" / "lib.c").exists()

    full = fetch_source(GitSource(git=str(app), submodules=True), base=tmp_path, cache=cache)
    assert full.commit == plain.commit and full.path != plain.path
    assert (full.path / "vendor" / "lib" / "lib.c").read_text() == "int old;\n"  # the recorded commit
    assert (full.path / "vendor" / "lib" / "third" / "deep" / "deep.h").exists()  # recursively
    assert (full.path / "main.c").exists()
    assert not (plain.path / "vendor" / "lib" / "lib.c").exists()  # the plain tree is untouched
    from assemblage.sources._util import read_index

    records = [read_index(cache / "git", p.stem) for p in (cache / "git" / "index").glob("*.json")]
    assert any(r and r.get("submodules") == {"vendor/lib": pinned} for r in records)


def test_submodule_urls() -> None:
    from assemblage.sources.git import _check_submodule_url, submodule_url

    assert submodule_url("https://h/o/app.git", "../lib.git") == "https://h/o/lib.git"
    assert submodule_url("git@h:o/app.git", "../lib.git") == "git@h:o/lib.git"
    assert submodule_url("/srv/app", "../lib") == "/srv/lib"
    assert submodule_url("https://h/o/app.git", "https://x/y.git") == "https://x/y.git"
    with pytest.raises(SourceError, match="climbs"):
        submodule_url("https://h/app.git", "../../../etc")
    for hostile in ("/etc", "file:///etc", "../../../../etc"):
        with pytest.raises(SourceError):
            _check_submodule_url("https://h/o/app.git", submodule_url("https://h/o/app.git", hostile), "x")
    with pytest.raises(SourceError):
        _check_submodule_url("https://h/o/app.git", "--upload-pack=touch pwned", "x")
    _check_submodule_url("/srv/app", "/srv/lib", "x")  # a local parent may use local submodules
