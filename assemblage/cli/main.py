"""The ``assemblage`` command line."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from assemblage.errors import AssemblageError, RecipeError

app = typer.Typer(
    name="assemblage",
    help="Build large, labelled corpora of compiled binaries.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
recipe_app = typer.Typer(help="Work with recipes.", no_args_is_help=True)
app.add_typer(recipe_app, name="recipe")

console = Console(stderr=False)
err = Console(stderr=True, soft_wrap=True)


@app.command()
def build(
    recipe: Annotated[Path, typer.Argument(help="The recipe (YAML)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder")] = Path("out"),
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Builds at once")] = max(1, os.cpu_count() or 1),
    runner: Annotated[Optional[str], typer.Option(help="local or docker (overrides the recipe)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False,
) -> None:
    """Build every source of RECIPE under every configuration of its matrix into OUT."""
    from assemblage.cli.progress import RichProgress, print_summary
    from assemblage.pipeline.embedded import open_dataset, run_recipe
    from assemblage.pipeline.report import run_report
    from assemblage.recipes.load import load_recipe

    rec, base = load_recipe(recipe)
    if runner is not None:
        if runner not in ("local", "docker"):
            raise RecipeError([], file=f"--runner {runner!r}: expected local or docker")
        rec = rec.model_copy(update={"build": rec.build.model_copy(update={"runner": runner})})
    if rec.build.runner == "docker":  # refuse now, not once per build, when Docker or the image is missing
        from assemblage.builds.docker_runner import DEFAULT_IMAGE, check_image

        check_image(rec.build.image or DEFAULT_IMAGE)
    text = recipe.read_text(encoding="utf-8")
    dataset = open_dataset(out)
    started = time.monotonic()
    progress = RichProgress(console, enabled=not quiet and console.is_terminal)
    run_id = run_recipe(dataset, rec, text, base, jobs=jobs, progress=progress)
    with dataset.context.sessions() as s:
        report = run_report(s, run_id)
    print_summary(console, report, dataset.db_path, time.monotonic() - started)


@recipe_app.command("check")
def recipe_check(recipe: Annotated[Path, typer.Argument(help="The recipe (YAML)")]) -> None:
    """Validate RECIPE: print every problem with its place in the file (exit 2), or the expanded matrix."""
    from assemblage.recipes.load import load_recipe
    from assemblage.recipes.matrix import expand_matrix

    rec, _ = load_recipe(recipe)
    configs, notes = expand_matrix(rec)
    console.print(f"[green]ok[/] {recipe}: {len(rec.sources)} source(s) x {len(configs)} configuration(s)")
    for c in configs:
        console.print(f"  {c.id}")
    for n in notes:
        console.print(f"  [yellow]note:[/] {n}")


@app.command()
def toolchains(
    action: Annotated[Optional[str], typer.Argument(help="'install' to install toolchains with apt")] = None,
    names: Annotated[Optional[list[str]], typer.Argument(help="NAME or NAME:PLATFORM-ARCH, e.g. clang-19:linux-x86_64")] = None,
) -> None:
    """List the toolchains and which targets are installed; or ``toolchains install NAME...``."""
    from assemblage.cli.toolchains import install, list_toolchains

    if action is None:
        list_toolchains(console)
    elif action == "install":
        install(console, names or [])
    else:
        raise typer.BadParameter(f"unknown action {action!r} (use: assemblage toolchains [install NAME...])")


def _register_optional() -> None:
    """Commands that live in their own modules (and may need optional dependencies)."""
    try:
        from assemblage.cli.analyze import register as register_analyze
    except ImportError:  # pragma: no cover - the module is part of the package
        pass
    else:
        register_analyze(app)
    try:
        from assemblage.cli.service import register as register_service
    except ImportError:
        pass
    else:
        register_service(app)


_register_optional()


def main() -> None:
    try:
        rc = app(standalone_mode=False)  # click returns the code of typer.Exit in this mode
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except RecipeError as exc:
        where = f"{exc.file}: " if exc.file else ""
        err.print(f"[red]error:[/] {where}{len(exc.problems)} problem(s) in recipe", highlight=False)
        for p in exc.problems:
            err.print(f"  {p}", highlight=False, markup=False)
        sys.exit(exc.exit_code)
    except AssemblageError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
