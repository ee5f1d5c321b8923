"""User-data for worker instances: cloud-init for Linux, PowerShell for Windows MSVC hosts.

What a Linux instance does at first boot (``fleet user-data --queues linux``):

1. installs the toolchains of its queues, bubblewrap, Docker and Python from Debian/Ubuntu
   packages, and ``fleet.package`` (pip) into ``/opt/assemblage/venv``;
2. fetches the secrets (``ASSEMBLAGE_SECRET_KEY``, URLs with passwords) from the SSM
   SecureString parameter ``fleet.secrets_parameter`` into ``/etc/assemblage/secrets.env``
   (mode 0600) with ``assemblage fleet secrets``, which prints nothing;
3. pulls ``fleet.image`` or builds the toolchain image from ``fleet.source_url`` (for
   ``runner: docker`` builds);
4. starts ``assemblage worker -Q QUEUES`` as the systemd unit ``assemblage-worker``, with
   ``KillMode=mixed`` (SIGTERM to the worker alone, which drains) and a stop timeout past the
   drain timeout.

Secrets never appear in user-data: EC2 shows user-data to anyone allowed
``ec2:DescribeInstanceAttribute`` and to every process on the instance, and cloud-init keeps
a copy under ``/var/lib/cloud``. Settings whose values are secret (the secret key, a database or
broker URL with a password, AWS keys) are left out of the environment file it writes; a
settings file holding them without ``fleet.secrets_parameter`` is refused. The setup script
runs without ``set -x`` so its log (``/var/log/cloud-init-output.log``) holds no values.
"""

from __future__ import annotations

import shlex
from urllib.parse import urlparse

import yaml

from assemblage.errors import FleetError
from assemblage.settings import Settings
from assemblage.tasks.app import QUEUES

__all__ = ["linux_user_data", "windows_user_data", "worker_environment", "setup_script", "SETUP_PATH"]

SETUP_PATH = "/usr/local/sbin/assemblage-worker-setup"
ENV_PATH = "/etc/assemblage/worker.env"
SECRETS_PATH = "/etc/assemblage/secrets.env"
UNIT_PATH = "/etc/systemd/system/assemblage-worker.service"
METADATA_URL = "http://169.254.169.254"

# Debian packages per queue (the same as scripts/bootstrap.sh and workers/linux/Dockerfile)
_BASE = [
    "python3",
    "python3-venv",
    "git",
    "ca-certificates",
    "bubblewrap",
    "docker.io",
    "curl",
    "xz-utils",
    "bzip2",
    "unzip",
    "dpkg-dev",
    "binutils",
    "file",
    "make",
    "cmake",
    "ninja-build",
    "meson",
    "pkg-config",
    "autoconf",
    "automake",
    "libtool",
]
_PACKAGES = {
    "crawl": [],
    "linux": [
        "build-essential",
        "gcc-12",
        "g++-12",
        "gcc-11",
        "g++-11",
        "clang-14",
        "clang-16",
        "clang-19",
        "lld-19",
        "llvm-19",
        "gcc-aarch64-linux-gnu",
        "g++-aarch64-linux-gnu",
        "libc6-dev-arm64-cross",
        "gcc-arm-linux-gnueabihf",
        "g++-arm-linux-gnueabihf",
        "libc6-dev-armhf-cross",
    ],
    "windows-cross": ["clang-19", "lld-19", "llvm-19", "gcc-mingw-w64", "g++-mingw-w64"],
}


def _check_queues(queues: list[str], *, windows: bool) -> None:
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown or not queues:
        raise FleetError(f"unknown queue(s) {', '.join(unknown) or '(none)'}; known: {', '.join(QUEUES)}")
    if windows != (queues == ["msvc"]):
        raise FleetError(
            "msvc workers run on Windows hosts: give --queues msvc alone for a Windows instance, "
            "and Linux queues (crawl, linux, windows-cross) for a Linux one"
        )


def _has_password(url: str | None) -> bool:
    return bool(url) and urlparse(url).password is not None


def worker_environment(settings: Settings) -> tuple[dict[str, str], list[str]]:
    """(the ``ASSEMBLAGE_*`` variables safe to put in user-data, the names of those that are secret)."""
    env = {
        "ASSEMBLAGE_ENVIRONMENT": settings.environment,
        "ASSEMBLAGE_STORAGE_URL": settings.storage_url,
        "ASSEMBLAGE_S3_REGION": settings.s3_region,
        "ASSEMBLAGE_HEARTBEAT_INTERVAL": str(settings.heartbeat_interval),
        "ASSEMBLAGE_WORKER_DEAD_AFTER": str(settings.worker_dead_after),
        "ASSEMBLAGE_TASK_TIME_LIMIT": str(settings.task_time_limit),
        "ASSEMBLAGE_DRAIN_TIMEOUT": str(settings.drain_timeout),
        "ASSEMBLAGE_SPOT_MARGIN": str(settings.spot_margin),
        "ASSEMBLAGE_INSTANCE_METADATA_URL": METADATA_URL,
        "ASSEMBLAGE_LOG_FORMAT": "json",
        "ASSEMBLAGE_CACHE_DIR": "/var/lib/assemblage/sources",
        "ASSEMBLAGE_WORK_ROOT": "/var/lib/assemblage/work",
    }
    if settings.s3_endpoint_url:
        env["ASSEMBLAGE_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    if settings.fleet.region:
        env["AWS_DEFAULT_REGION"] = settings.fleet.region
    secret = ["ASSEMBLAGE_SECRET_KEY"] if settings.environment != "development" else []
    for name, url in (
        ("ASSEMBLAGE_DATABASE_URL", settings.database_url),
        ("ASSEMBLAGE_BROKER_URL", settings.broker_url),
    ):
        if _has_password(url):
            secret.append(name)
        else:
            env[name] = url
    if secret and not settings.fleet.secrets_parameter:
        raise FleetError(
            f"{', '.join(secret)} must not go into user-data (readable through the EC2 API and on the instance): "
            "store them as KEY=value lines in an SSM SecureString parameter and name it in the settings "
            '([fleet] secrets_parameter = "/assemblage/worker")'
        )
    return env, secret


def _env_file(env: dict[str, str]) -> str:
    def q(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "".join(f"{k}={q(v)}\n" for k, v in sorted(env.items()))


def _unit(queues: list[str], concurrency: int, drain: float) -> str:
    argv = [
        "/opt/assemblage/venv/bin/assemblage",
        "worker",
        "-Q",
        ",".join(queues),
        "-c",
        str(concurrency),
        "-n",
        f"{queues[-1]}@%H",
    ]
    return f"""[Unit]
Description=Assemblage worker ({", ".join(queues)})
Wants=network-online.target docker.service
After=network-online.target docker.service

[Service]
User=assemblage
SupplementaryGroups=docker
EnvironmentFile={ENV_PATH}
EnvironmentFile=-{SECRETS_PATH}
ExecStart={" ".join(argv)}
# SIGTERM to the worker alone: it stops taking tasks and drains (hands back what cannot finish)
KillMode=mixed
KillSignal=SIGTERM
TimeoutStopSec={int(drain) + 60}
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
"""


def setup_script(settings: Settings, queues: list[str]) -> str:
    """The first-boot script (bash; checked with shellcheck in the tests)."""
    f = settings.fleet
    packages = sorted({*_BASE, *(p for q in queues for p in _PACKAGES.get(q, []))})
    lines = [
        "#!/bin/bash",
        "# Assemblage worker setup (written by `assemblage fleet user-data`). Prints no setting values.",
        "set -euo pipefail",
        "umask 022",
        "export DEBIAN_FRONTEND=noninteractive",
        f"PACKAGE={shlex.quote(f.package)}",
        f"IMAGE={shlex.quote(f.image or '')}",
        f"SOURCE_URL={shlex.quote(f.source_url)}",
        f"SOURCE_REF={shlex.quote(f.source_ref)}",
        f"SECRETS_PARAMETER={shlex.quote(f.secrets_parameter or '')}",
        f"REGION={shlex.quote(f.region or '')}",
        "",
        "apt-get update -q",
        "apt-get install -y -q --no-install-recommends \\",
        "  " + " ".join(packages),
        "",
        "id assemblage >/dev/null 2>&1 || useradd --system --create-home --home-dir /var/lib/assemblage assemblage",
        "usermod -aG docker assemblage",
        "install -d -o assemblage -g assemblage -m 0750 /var/lib/assemblage/sources /var/lib/assemblage/work",
        "python3 -m venv /opt/assemblage/venv",
        "/opt/assemblage/venv/bin/pip install --quiet --upgrade pip",
        '/opt/assemblage/venv/bin/pip install --quiet "$PACKAGE"',
        "",
        "# secrets: from SSM into a file only root and the unit read (never echoed)",
        'if [ -n "$SECRETS_PARAMETER" ]; then',
        "  install -d -m 0700 /etc/assemblage",
        '  /opt/assemblage/venv/bin/assemblage fleet secrets --parameter "$SECRETS_PARAMETER" \\',
        f'    ${{REGION:+--region "$REGION"}} --out {SECRETS_PATH}',
        "fi",
        "",
        "# the toolchain image, for recipes with `build: {runner: docker}`",
        "systemctl enable --now docker",
        'if [ -n "$IMAGE" ]; then',
        '  docker pull "$IMAGE"',
        '  docker tag "$IMAGE" assemblage-linux:latest',
        "else",
        "  rm -rf /opt/assemblage/src",
        '  git clone --quiet --depth 1 --branch "$SOURCE_REF" "$SOURCE_URL" /opt/assemblage/src',
        "  /opt/assemblage/src/scripts/docker.sh image",
        "fi",
        "",
        "systemctl daemon-reload",
        "systemctl enable --now assemblage-worker.service",
        "",
    ]
    return "\n".join(lines)


class _Literal(str):
    pass


def _literal(dumper: yaml.SafeDumper, data: _Literal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(data), style="|")


def linux_user_data(settings: Settings, queues: list[str], *, concurrency: int | None = None) -> str:
    """``#cloud-config`` for a Linux worker of ``queues``."""
    _check_queues(queues, windows=False)
    env, _secret = worker_environment(settings)
    family = next((q for q in reversed(queues) if q != "crawl"), "linux")
    group = settings.fleet.groups.get(family)
    concurrency = concurrency or (group.builds_per_instance if group else 2)
    doc = {
        "write_files": [
            {"path": ENV_PATH, "permissions": "0640", "owner": "root:root", "content": _Literal(_env_file(env))},
            {
                "path": UNIT_PATH,
                "permissions": "0644",
                "owner": "root:root",
                "content": _Literal(_unit(queues, concurrency, settings.drain_timeout)),
            },
            {
                "path": SETUP_PATH,
                "permissions": "0700",
                "owner": "root:root",
                "content": _Literal(setup_script(settings, queues)),
            },
        ],
        "runcmd": [[SETUP_PATH]],
    }

    class Dumper(yaml.SafeDumper):  # a class of its own: the representer is not added to SafeDumper's
        pass

    Dumper.add_representer(_Literal, _literal)
    return "#cloud-config\n" + yaml.dump(doc, Dumper=Dumper, sort_keys=False, width=1000)


def _ps(value: str) -> str:
    """A PowerShell single-quoted string (nothing inside is expanded)."""
    return "'" + value.replace("'", "''") + "'"


def windows_user_data(settings: Settings, queues: list[str], *, concurrency: int | None = None) -> str:
    """``<powershell>`` user-data for a Windows MSVC worker (the workers/windows image, one container per slot)."""
    _check_queues(queues, windows=True)
    env, _secret = worker_environment(settings)
    for linux_only in ("ASSEMBLAGE_CACHE_DIR", "ASSEMBLAGE_WORK_ROOT"):  # the image sets its own folders
        env.pop(linux_only)
    f = settings.fleet
    group = f.groups.get("msvc")
    slots = concurrency or (group.builds_per_instance if group else 1)
    env_lines = "\n".join(f"  {_ps(f'{k}={v}')}" for k, v in sorted(env.items()))
    return f"""<powershell>
# Assemblage MSVC worker setup (written by `assemblage fleet user-data --queues msvc`).
# Needs a Windows Server 2022 AMI with the Containers feature and Docker, and AWS Tools for PowerShell.
$ErrorActionPreference = 'Stop'
$dir = 'C:\\ProgramData\\Assemblage'
New-Item -ItemType Directory -Force -Path $dir | Out-Null
# only Administrators and SYSTEM may read the settings folder
icacls $dir /inheritance:r /grant:r 'Administrators:(OI)(CI)F' 'SYSTEM:(OI)(CI)F' | Out-Null
$envFile = Join-Path $dir 'worker.env'
$lines = @(
{env_lines}
)
$parameter = {_ps(f.secrets_parameter or "")}
if ($parameter) {{
  $secret = (Get-SSMParameterValue -Name $parameter -WithDecryption $true).Parameters[0].Value
  $lines += ($secret -split "`r?`n" | Where-Object {{ $_ -match '^[A-Z_][A-Z0-9_]*=' }})
}}
Set-Content -Path $envFile -Value $lines -Encoding ascii

$image = {_ps(f.image or f.msvc_image)}
if ({_ps(f.image or "")}) {{
  docker pull $image
}} elseif (-not (docker images -q $image)) {{
  git clone --quiet --depth 1 --branch {_ps(f.source_ref)} {_ps(f.source_url)} C:\\assemblage-src
  docker build -f C:\\assemblage-src\\workers\\windows\\Dockerfile -t $image C:\\assemblage-src
}}

# one container per build slot (Celery's solo pool on Windows); Docker restarts them with the host
for ($i = 1; $i -le {int(slots)}; $i++) {{
  $name = "assemblage-msvc-$i"
  docker rm -f $name 2>$null | Out-Null
  docker run -d --name $name --restart unless-stopped --isolation=process --memory 8g `
    --env-file $envFile -v "C:\\assemblage-work\\$($i):C:\\work" `
    --entrypoint assemblage $image worker -Q {_ps(",".join(queues))} --pool solo -c 1 -n "msvc-$i@$env:COMPUTERNAME"
}}
</powershell>
<persist>false</persist>
"""
