"""The ``assemblage`` command line."""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.exceptions import TyperException

from assemblage.cli.analyze import register as register_analyze
from assemblage.cli.corpus import register as register_corpus
from assemblage.cli.fleet import register as register_fleet
from assemblage.cli.repro import register as register_repro
from assemblage.cli.service import register as register_service
from assemblage.errors import AssemblageError, RecipeError

EXIT_CODES_HELP = """Exit codes: 0 success; 1 an error of Assemblage itself; 2 a usage error or an invalid
recipe or lock; 3 a source could not be fetched; 4 an unknown or missing toolchain; 5 the build
machinery (Docker, sandbox) is unavailable; 6 a file that is not a valid ELF/PE/PDB; 7 the
database or object store is unavailable; 8 invalid settings; 9 the run finished but some
builds did not succeed (`build`, `report`; --allow-failures turns it into 0); 10 an AWS call of
`fleet` failed; 11 `rebuild`/`verify` refused: the lock's toolchain, image or source differs
here (--allow-drift); 12 an export could not be written (an object missing or corrupt, an output
folder not empty); 130 interrupted."""

app = typer.Typer(
    name="assemblage",
    help="Build large, labelled corpora of compiled binaries.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
recipe_app = typer.Typer(help="Work with recipes.", no_args_is_help=True)
app.add_typer(recipe_app, name="recipe")

console = Console(stderr=False)
err = Console(stderr=True, soft_wrap=True)

# ``build`` and ``report``: the run finished, but some builds did not succeed
EXIT_PARTIAL = 9


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"assemblage {version('assemblage')}")
        except PackageNotFoundError:  # pragma: no cover - run from a tree that is not installed
            typer.echo("assemblage (not installed)")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit")
    ] = False,
) -> None:
    """Build large, labelled corpora of compiled binaries."""


@app.command()
def build(
    recipe: Annotated[Path, typer.Argument(help="The recipe (YAML)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder")] = Path("out"),
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Builds at once")] = max(1, os.cpu_count() or 1),
    runner: Annotated[str | None, typer.Option(help="local or docker (overrides the recipe)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object (no progress bar)")
    ] = False,
    allow_failures: Annotated[
        bool,
        typer.Option("--allow-failures", help=f"Exit 0 even when some builds did not succeed (else {EXIT_PARTIAL})"),
    ] = False,
    install_dependencies: Annotated[
        bool,
        typer.Option(
            "--install-dependencies",
            help="local runner: install missing Debian packages on this machine with apt-get (needs root; "
            "same as ASSEMBLAGE_INSTALL_DEPENDENCIES=1)",
        ),
    ] = False,
) -> None:
    """Build every source of RECIPE under every configuration of its matrix into OUT.

    Exits 0 when every build succeeded, 9 when the run finished but some builds did not.
    """
    if install_dependencies:
        from assemblage.builds.deps import INSTALL_SETTING

        os.environ[INSTALL_SETTING] = "1"
    from assemblage.cli.progress import RichProgress
    from assemblage.pipeline.embedded import open_dataset, run_recipe
    from assemblage.pipeline.report import run_report
    from assemblage.recipes.load import load_recipe

    if runner is not None and runner not in ("local", "docker"):
        raise typer.BadParameter(f"{runner!r}: expected local or docker", param_hint="--runner")
    rec, base = load_recipe(recipe)
    if runner is not None:
        rec = rec.model_copy(update={"build": rec.build.model_copy(update={"runner": runner})})
    if rec.build.runner == "docker":  # refuse now, not once per build, when Docker or the image is missing
        from assemblage.builds.docker_runner import DEFAULT_IMAGE, check_image

        check_image(rec.build.image or DEFAULT_IMAGE)
    text = recipe.read_text(encoding="utf-8")
    dataset = open_dataset(out)
    started = time.monotonic()
    progress = RichProgress(err if as_json else console, enabled=not quiet and not as_json and console.is_terminal)
    run_id = run_recipe(dataset, rec, text, base, jobs=jobs, progress=progress)
    with dataset.context.sessions() as s:
        report = run_report(s, run_id)
    _show_report(report, dataset.db_path, time.monotonic() - started, as_json=as_json, allow_failures=allow_failures)


def _show_report(report, db_path: Path, elapsed: float | None, *, as_json: bool, allow_failures: bool) -> None:
    """Print a run's summary (Rich or JSON); exit 9 when some builds did not succeed (unless allowed)."""
    from assemblage.cli.progress import print_summary, report_json

    if as_json:
        typer.echo(json.dumps(report_json(report, db_path, elapsed), indent=2))
    else:
        print_summary(console, report, db_path, elapsed)
    unfinished = sum(n for status, n in report.by_status.items() if status != "succeeded")
    if unfinished and not allow_failures:
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def crawl(
    recipe: Annotated[Path | None, typer.Argument(help="The recipe (YAML)")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="A dataset folder whose answer cache to use and keep (default: a temporary one)"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    debian: Annotated[
        str | None,
        typer.Option(
            "--debian", help="Instead of a recipe, one debian selector (YAML), e.g. '{section: libs, limit: 20}'"
        ),
    ] = None,
    cache: Annotated[
        Path, typer.Option(help="Where debian selectors fetch packages (a build with --out DIR uses DIR/sources)")
    ] = Path("assemblage-data/sources"),
    show_all: Annotated[bool, typer.Option("--all", help="Also the Debian packages looked at and left out")] = False,
) -> None:
    """Print what the recipe's searches would add (GitHub repositories, packages of debian: selectors), building nothing."""
    from assemblage.cli.crawl import crawl_recipe
    from assemblage.cli.crawl_debian import crawl_debian_selector

    if (recipe is None) == (debian is None):
        raise typer.BadParameter("give a RECIPE or --debian SELECTOR (one of them)", param_hint="RECIPE")
    if debian is not None:
        crawl_debian_selector(debian, cache, as_json=as_json, show_all=show_all, console=console)
        return
    assert recipe is not None  # one of them, checked above
    crawl_recipe(recipe, out, as_json=as_json, console=console, debian_cache=cache, show_all=show_all)


@app.command()
def report(
    dataset: Annotated[Path, typer.Argument(help="A dataset folder (assemblage build --out DIR)")],
    run: Annotated[int | None, typer.Option("--run", min=1, help="The run (default: the latest)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object")] = False,
    allow_failures: Annotated[
        bool,
        typer.Option("--allow-failures", help=f"Exit 0 even when some builds did not succeed (else {EXIT_PARTIAL})"),
    ] = False,
) -> None:
    """Print the summary of a run of DATASET again (builds by status, coverage, binaries, labels)."""
    from assemblage.pipeline.embedded import find_run, open_existing_dataset
    from assemblage.pipeline.report import run_report

    if not (dataset / "dataset.sqlite").is_file():
        raise typer.BadParameter(
            f"{dataset}: no dataset here (assemblage build RECIPE --out {dataset} makes one)", param_hint="DATASET"
        )
    ds = open_existing_dataset(dataset)
    with ds.context.sessions() as s:
        run_id = find_run(s, run)
        rep = run_report(s, run_id)
    _show_report(rep, ds.db_path, None, as_json=as_json, allow_failures=allow_failures)


@app.command()
def cancel(
    run: Annotated[int, typer.Argument(min=1, help="The run's id")],
    dataset: Annotated[
        Path, typer.Option("--dataset", "-d", help="The dataset folder of the run (assemblage build --out DIR)")
    ],
) -> None:
    """Cancel RUN of DATASET: an `assemblage build` running it kills its builds and stops within seconds.

    Its unfinished builds become skipped (reason cancelled); cancelling it again changes nothing.
    A run that has ended otherwise (finished, failed, interrupted) is not cancelled (exit 1).
    """
    from assemblage.pipeline.embedded import find_run, open_existing_dataset
    from assemblage.pipeline.states import cancel_run

    if not (dataset / "dataset.sqlite").is_file():
        raise typer.BadParameter(
            f"{dataset}: no dataset here (assemblage build RECIPE --out {dataset} makes one)", param_hint="--dataset"
        )
    ds = open_existing_dataset(dataset)
    with ds.context.sessions() as s:
        find_run(s, run)  # a clear error for a run the dataset does not have
    outcome = cancel_run(ds.context.sessions, run)  # IllegalTransition (exit 1) when the run has ended otherwise
    if outcome is None:
        raise AssemblageError(f"no run {run} in the dataset")
    console.print(
        f"run {run}: {outcome.status}; {outcome.queued} queued build(s) will not start, "
        f"{outcome.running} running build(s) stopped",
        highlight=False,
    )


@recipe_app.command("check")
def recipe_check(
    recipe: Annotated[Path, typer.Argument(help="The recipe (YAML)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object")] = False,
) -> None:
    """Validate RECIPE: every problem with its place in the file (exit 2), or the expanded matrix.

    Warnings (a toolchain that is not installed here, a GitHub search without a token) do
    not fail the check: the builds would be recorded as skipped or the source as failed.
    """
    from assemblage.recipes.load import load_recipe
    from assemblage.recipes.matrix import expand_matrix
    from assemblage.recipes.warnings import recipe_warnings

    rec, _ = load_recipe(recipe)
    configs, notes = expand_matrix(rec)
    warnings = recipe_warnings(rec, configs)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": True,
                    "recipe": str(recipe),
                    "sources": len(rec.sources),
                    "configurations": [c.id for c in configs],
                    "notes": notes,
                    "warnings": warnings,
                },
                indent=2,
            )
        )
        return
    console.print(
        f"[green]ok[/] {recipe}: {len(rec.sources)} source(s) x {len(configs)} configuration(s)", highlight=False
    )
    for c in configs:
        console.print(f"  {c.id}", highlight=False)
    for n in notes:
        console.print(f"  [yellow]note:[/] {n}", highlight=False)
    for w in warnings:
        console.print(f"  [yellow]warning:[/] {w}", highlight=False)


@recipe_app.command("schema")
def recipe_schema() -> None:
    """Print the recipe format as JSON Schema (every key, its type and its meaning)."""
    from assemblage.recipes.models import Recipe

    typer.echo(json.dumps(Recipe.model_json_schema(), indent=2))


@app.command()
def toolchains(
    action: Annotated[str | None, typer.Argument(help="'install' to install toolchains with apt")] = None,
    names: Annotated[
        list[str] | None, typer.Argument(help="NAME or NAME:PLATFORM-ARCH, e.g. clang-19:linux-x86_64")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the targets as JSON")] = False,
) -> None:
    """List the toolchains and which targets are installed; or ``toolchains install NAME...``."""
    from assemblage.cli.toolchains import install, list_toolchains

    if action is None:
        if names:
            raise typer.BadParameter("toolchain names go after 'install'", param_hint="NAMES")
        list_toolchains(console, as_json=as_json)
    elif action == "install":
        install(console, names or [])
    else:
        raise typer.BadParameter(f"unknown action {action!r} (use: assemblage toolchains [install NAME...])")


# Commands that live in their own modules. Imported plainly: a command that cannot be
# imported is a broken install and must fail loudly, never vanish from the CLI.
register_analyze(app)
register_repro(app)
register_corpus(app)
register_service(app)
register_fleet(app)


def say_error(message: str) -> None:
    """``error: MESSAGE`` on stderr, the prefix in red; the message is never read as markup."""
    from rich.text import Text

    err.print(Text.assemble(("error:", "red"), " ", message), highlight=False)


def _usage_error(exc: Exception) -> None:
    """A command-line mistake: one line on stderr (the whole help for a bare group), exit 2."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        typer.echo(ctx.get_help(), err=True)
        sys.exit(2)
    where = ctx.command_path if ctx is not None else "assemblage"
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    message = " ".join(message.split())
    say_error(f"{message} (see: {where} --help)")
    sys.exit(getattr(exc, "exit_code", 2) or 2)


def main(argv: list[str] | None = None) -> None:
    """The console script: every failure is one clear message and an exit code (see --help)."""
    try:
        _main(argv)
    finally:
        if argv is None:  # the process ends here: no collection walks the heap again while modules are torn down
            gc.freeze()


def _main(argv: list[str] | None) -> None:
    try:
        rc = app(args=argv, prog_name="assemblage", standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except RecipeError as exc:
        where = f"{exc.file}: " if exc.file else ""
        if len(exc.problems) == 1:  # one line says it all
            say_error(f"{where}{exc.problems[0]}")
        else:
            say_error(f"{where}{len(exc.problems)} problem(s) in recipe" if exc.problems else f"{where}invalid recipe")
            for p in exc.problems:
                err.print(f"  {p}", highlight=False, markup=False)
        sys.exit(exc.exit_code)
    except AssemblageError as exc:
        say_error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]")
        sys.exit(130)
    except (typer.Exit, typer.Abort) as exc:
        code = getattr(exc, "exit_code", 1)
        if isinstance(exc, typer.Abort):
            err.print("[red]aborted[/]")
        sys.exit(code)
    except TyperException as exc:  # the usage errors of typer's bundled click
        if getattr(exc, "exit_code", 1) == 2 or type(exc).__name__ == "NoArgsIsHelpError":
            _usage_error(exc)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        say_error(message)
        sys.exit(getattr(exc, "exit_code", 1))
