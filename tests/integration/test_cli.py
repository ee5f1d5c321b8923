"""The installed ``assemblage`` command, run as a user runs it: a subprocess of the console script.

Nothing here builds its own Typer app: a command that fails to import or to
register makes these tests fail (``assemblage.cli.main`` imports its command
modules plainly, so a broken one breaks the CLI loudly instead of vanishing).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "elf"
EXE = Path(sys.executable).parent / "assemblage"  # the console script `pip install -e .` made

# Every command of docs/cli.md (tests/unit/test_docs_complete.py checks the docs against the app). Extend when a command lands.
COMMANDS = {
    "build": "Build every source of RECIPE",
    "report": "Print the summary of a run",
    "cancel": "Cancel RUN of DATASET",
    "crawl": "Print what the recipe's searches would add",
    "ui": "Serve the web pages over an embedded dataset",
    "analyze": "Extract ground truth",
    "verify-labels": "Compare our labels",
    "recipe": "Work with recipes",
    "toolchains": "List the toolchains",
    "serve": "Run the coordinator",
    "worker": "Run a Celery worker",
    "db": "The service's database",
    "token": "API tokens",
    "fleet": "Workers on AWS",
    "lock": "Print the lock of a run",
    "rebuild": "Rebuild exactly what LOCK pins",
    "verify": "Rebuild a seeded sample of a run's builds",
    "select": "Count (and list) the binaries a selection picks",
    "export": "Export a curated corpus",
}
SUBCOMMANDS = {
    "recipe": {"check", "schema"},
    "db": {"upgrade"},
    "token": {"create", "list", "revoke"},
    "fleet": {"user-data", "reconcile", "cost", "lifecycle", "secrets"},
}


def cli(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    assert EXE.is_file(), f"the console script is not installed at {EXE} (pip install -e '.[service,test]')"
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, env=env, timeout=120, check=check)


def listed_commands(help_text: str) -> set[str]:
    """Command names in the "Commands:" section of a --help screen (up to the next blank line)."""
    section = help_text.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"^  ([a-z][a-z-]*)(?:\s{2,}|$)", section, re.M))


def test_help_lists_every_command_and_each_one_answers():
    top = cli("--help")
    assert top.returncode == 0, top.stderr
    assert listed_commands(top.stdout) == set(COMMANDS), top.stdout
    for name, summary in COMMANDS.items():
        r = cli(name, "--help")
        assert r.returncode == 0, (name, r.stderr)
        assert f"Usage: assemblage {name}" in r.stdout and summary in " ".join(r.stdout.split()), (name, r.stdout)
        if name in SUBCOMMANDS:
            assert listed_commands(r.stdout) == SUBCOMMANDS[name], (name, r.stdout)


def test_unknown_command_and_missing_argument_are_usage_errors():
    r = cli("no-such-command")
    assert (r.returncode, r.stderr) == (2, "error: No such command 'no-such-command'. (see: assemblage --help)\n")
    r = cli("analyze")
    assert (r.returncode, r.stderr) == (2, "error: Missing argument 'files'. (see: assemblage analyze --help)\n")


@pytest.fixture(scope="module")
def elf(tmp_path_factory) -> Path:
    need("gcc-12", "nm")
    exe = tmp_path_factory.mktemp("cli") / "labels"
    subprocess.run(["gcc-12", "-g", "-O2", "-o", str(exe), str(FIXTURES / "labels.c")], check=True)
    return exe


def nm_functions(path: Path) -> dict[str, tuple[int, int]]:
    """name -> (address, size) of the defined function symbols, as nm prints them (the oracle)."""
    out = subprocess.run(["nm", "-S", "--defined-only", str(path)], capture_output=True, text=True, check=True).stdout
    funcs = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tT":
            funcs[parts[3]] = (int(parts[0], 16), int(parts[1], 16))
    return funcs


def test_analyze_json_prints_one_object_per_file_and_names_the_bad_one(elf, tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x02\x00\x3e\x00" + b"\xff" * 100)
    r = cli("analyze", str(elf), str(bad), "--json")
    assert r.returncode == 6, (r.stdout, r.stderr)  # InvalidBinaryError's exit code: one input was bad
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(docs) == 1, r.stdout
    doc = docs[0]
    assert doc["sha256"] == hashlib.sha256(elf.read_bytes()).hexdigest()
    assert (doc["format"], doc["arch"], doc["bits"], doc["observed_opt"]) == ("elf", "x86_64", 64, "O2")
    oracle = nm_functions(elf)
    ours = {f["name"]: f for f in doc["functions"]}
    for name in ("main", "add", "fib", "report"):
        f = ours[name]
        assert {"name", "start", "end", "size", "source_file", "decl_line"} <= set(f)
        assert (f["start"], f["size"]) == oracle[name], (name, f, oracle[name])
        assert f["end"] == f["start"] + f["size"]  # end is exclusive
        assert f["source_file"].endswith("labels.c") and f["decl_line"] > 0
    assert f"error: {bad}: " in r.stderr and "Traceback" not in r.stderr


def test_verify_labels_json_agrees_with_the_independent_tools(elf):
    need("llvm-dwarfdump-19", "readelf")
    r = cli("verify-labels", "--json", str(elf))
    assert r.returncode == 0, (r.stdout, r.stderr)
    report = json.loads(r.stdout.splitlines()[0])
    assert report["ok"] is True and report["counts"]["dwarf_matched"] >= 5, report


def test_a_command_module_that_cannot_be_imported_breaks_the_cli_loudly():
    """The CLI never drops a command quietly: an ImportError in a command module is an error."""
    code = "import sys; sys.modules['assemblage.cli.analyze'] = None; import assemblage.cli.main"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "ModuleNotFoundError: import of assemblage.cli.analyze halted" in r.stderr, r.stderr
