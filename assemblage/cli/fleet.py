"""``assemblage fleet``: workers on AWS (user-data, reconcile, cost, lifecycle, secrets)."""

from __future__ import annotations

import json
import os
import secrets as _secrets
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]

_SettingsFile = Annotated[Path | None, typer.Option("--settings", help="A TOML settings file (the environment wins)")]
_Json = Annotated[bool, typer.Option("--json", help="Print JSON")]


def _load(file: Path | None, **overrides):
    from assemblage.settings import load_settings

    return load_settings(file, **overrides)


def _sessions(settings):
    from assemblage.db.session import make_engine, make_sessionmaker

    return make_sessionmaker(make_engine(settings.database_url))


def register(app: typer.Typer) -> None:
    fleet = typer.Typer(help="Workers on AWS: user-data, Auto Scaling, S3 lifecycle, cost.", no_args_is_help=True)
    app.add_typer(fleet, name="fleet")

    @fleet.command("user-data")
    def user_data(
        queues: Annotated[str, typer.Option("--queues", "-Q", help="linux, windows-cross, crawl (Linux) or msvc")],
        settings_file: _SettingsFile = None,
        concurrency: Annotated[
            int | None, typer.Option("--concurrency", "-c", min=1, help="Builds at once (default: the group's)")
        ] = None,
    ) -> None:
        """Print the user-data of a worker instance: cloud-init (Linux) or PowerShell (--queues msvc)."""
        from assemblage.fleet.userdata import linux_user_data, windows_user_data

        # the secret itself is never written into user-data: a stand-in lets production settings validate
        settings = _load(settings_file, secret_key=_secrets.token_urlsafe(32))
        wanted = [q.strip() for q in queues.split(",") if q.strip()]
        make = windows_user_data if wanted == ["msvc"] else linux_user_data
        typer.echo(make(settings, wanted, concurrency=concurrency), nl=False)

    @fleet.command("reconcile")
    def reconcile_cmd(
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would change; change nothing")] = False,
        settings_file: _SettingsFile = None,
        as_json: _Json = False,
    ) -> None:
        """Set each worker group's desired capacity from queue depths and running builds; protect busy instances."""
        from assemblage.fleet.reconcile import reconcile
        from assemblage.tasks.coordinator import queue_depths

        settings = _load(settings_file)
        if not settings.fleet.groups:
            raise typer.BadParameter("no worker groups in the settings: add [fleet.groups.linux] name = ... max = ...")
        decisions = reconcile(settings, _sessions(settings), queue_depths(settings.broker_url), dry_run=dry_run)
        if as_json:
            typer.echo(json.dumps([d.to_json() for d in decisions], indent=2))
            return
        for d in decisions:
            verb = "would set" if dry_run else "set"
            change = f"{d.current} -> {d.desired}" if d.desired != d.current else f"stays at {d.current}"
            typer.echo(
                f"{d.family}: {d.group} {change} ({d.reason}); {verb} protection on "
                f"{len(d.protect)}, lifted on {len(d.unprotect)}"
            )

    @fleet.command("cost")
    def cost(
        run_id: Annotated[int, typer.Argument(help="A finished run of the service's database")],
        settings_file: _SettingsFile = None,
        as_json: _Json = False,
    ) -> None:
        """Estimate the EC2 cost per 1,000 binaries from the run's measured build times and [fleet.prices]."""
        from assemblage.fleet.cost import estimate_run_cost

        settings = _load(settings_file)
        try:
            report = estimate_run_cost(_sessions(settings), run_id, settings.fleet)
        except LookupError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        if as_json:
            typer.echo(json.dumps(report.to_json(), indent=2))
            return
        for f in report.families:
            typer.echo(
                f"{f.family}: {f.builds} builds, {f.build_hours:.2f} build-hours / {f.builds_per_instance} "
                f"per instance = {f.instance_hours:.2f} h of {f.instance_type} at ${f.price_per_hour:.4f}/h "
                f"= ${f.dollars:.4f}"
            )
        per = f"${report.per_1000_binaries:.2f}" if report.per_1000_binaries is not None else "n/a (no binaries)"
        typer.echo(f"run {run_id}: {report.binaries} binaries, ${report.dollars:.4f} in all, {per} per 1,000 binaries")

    @fleet.command("lifecycle")
    def lifecycle(
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the rules; change nothing")] = False,
        settings_file: _SettingsFile = None,
        as_json: _Json = False,
    ) -> None:
        """Put the S3 lifecycle rules for build logs (infrequent access, then expiry) on the corpus bucket."""
        from assemblage.fleet.aws import apply_log_lifecycle, log_lifecycle_rules

        settings = _load(settings_file)
        bucket, config = log_lifecycle_rules(settings) if dry_run else apply_log_lifecycle(settings)
        if as_json:
            typer.echo(json.dumps({"bucket": bucket, "applied": not dry_run, **config}, indent=2))
            return
        for rule in config["Rules"]:
            what = ", ".join(k for k in ("Transitions", "Expiration", "AbortIncompleteMultipartUpload") if k in rule)
            typer.echo(f"s3://{bucket}/{rule['Filter']['Prefix']}: {rule['ID']} ({what})")
        typer.echo("applied" if not dry_run else "dry run: nothing changed")

    @fleet.command("secrets")
    def secrets_cmd(
        parameter: Annotated[str, typer.Option(help="The SSM SecureString parameter (KEY=value lines)")],
        out: Annotated[Path, typer.Option(help="The environment file to write (mode 0600)")],
        region: Annotated[str | None, typer.Option(help="The parameter's region")] = None,
    ) -> None:
        """Write an SSM SecureString parameter to an environment file readable by root only; prints nothing of it."""
        from assemblage.fleet.aws import read_secret_parameter

        settings = _load(None, **({"fleet": {"region": region}} if region else {}))
        value = read_secret_parameter(settings, parameter)
        lines = [ln.strip() for ln in value.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        bad = [i + 1 for i, ln in enumerate(lines) if "=" not in ln]
        if bad:
            raise typer.BadParameter(f"{parameter}: line(s) {', '.join(map(str, bad))} are not KEY=value")
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        os.chmod(out, 0o600)
        typer.echo(f"{len(lines)} variable(s) written to {out}")
