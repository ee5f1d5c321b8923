"""Where fetches may go: the service's source root for local sources, public addresses for the network.

Submitted recipes are hostile. An attack on the service showed two ways to read what
the workers can see: local sources outside ``ASSEMBLAGE_SOURCE_ROOT`` (``git:
file:///any/repo``, a relative ``path:`` resolved against the worker's working
directory) and server-side request forgery (archive and git URLs to loopback,
169.254.169.254, private ranges and the service's own ports, with error messages
that told open ports from closed ones). :class:`FetchPolicy` closes both:

- **Local sources** (``path:``, local ``archive:`` files, local git repositories,
  ``file://`` URLs) resolve against the source root only, never the working
  directory, with symlinks resolved, and must land inside it. A local git
  repository's ``.git`` file, ``commondir``, objects folder and ``alternates`` must
  resolve inside too, since git follows them to read objects from elsewhere.
  The API checks this before it records a run; the worker checks again before it
  fetches, so a row edited in the database or an older API does not get through.
- **Network fetches** are checked on the address a connection is about to use,
  after resolution (so DNS rebinding and names such as ``localhost`` do not get
  through): non-public addresses (loopback, link-local, private, shared,
  unspecified, multicast, reserved; IPv4 addresses inside IPv6 ones are unwrapped
  first) are refused unless ``ASSEMBLAGE_FETCH_ALLOW`` lists the host name or a
  network holding the address, and the service's own ports (database, broker,
  object store, API) on this machine or on their hosts are refused even then.

  Archives are downloaded by :mod:`urllib` through a connection class whose socket
  comes from :meth:`FetchPolicy.connect` (resolve once, check, connect to that
  address; every redirect opens a new, checked connection). git makes its own
  connections, so it is pinned instead: for http(s) the checked addresses are
  handed to curl with ``http.curloptResolve`` (curl does not resolve again),
  redirects are refused (``http.followRedirects=false``, which also stops dumb-HTTP
  ``http-alternates``), proxies are off and ``GIT_ALLOW_PROTOCOL`` names only the
  URL's own scheme; a ``git://`` URL is rewritten to the checked address (the
  daemon's virtual-host header then carries the address: rare on public hosts);
  ssh is refused, since ``ssh`` resolves and connects by itself and a service
  worker has no business holding ssh keys. A proxy of our own was considered and
  rejected: it is a long-lived moving part to guard pinning does without.

The embedded mode (``assemblage build``) runs a recipe its own user wrote, so its
policy is :meth:`FetchPolicy.unrestricted`: local paths anywhere, private mirrors
allowed, the detailed network errors a user needs to debug a proxy. The service
builds :meth:`FetchPolicy.for_service` from its settings and denies by default.

Restricted fetch errors do not tell open ports from closed ones: refused,
timed out, reset and not-HTTP all read ``no usable answer from HOST:PORT``.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assemblage.errors import FetchRefusedError, SourceError
from assemblage.urls import is_url, redact

__all__ = ["FetchPolicy", "DEFAULT_PORTS"]

log = logging.getLogger(__name__)

DEFAULT_PORTS = {
    "http": 80,
    "https": 443,
    "git": 9418,
    "ssh": 22,
    "postgresql": 5432,
    "postgres": 5432,
    "redis": 6379,
    "rediss": 6379,
    "amqp": 5672,
}
_PROXY_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "GIT_PROXY_COMMAND",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _inner(ip: Address) -> Address:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64, IPv4-compatible), else ``ip``."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64 or (ip in _V4_COMPATIBLE and int(ip) > 1):
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _public(ip: Address) -> bool:
    ip = _inner(ip)
    return ip.is_global and not ip.is_multicast and not ip.is_reserved and not ip.is_unspecified


def _parse_allow(entries: tuple[str, ...]) -> tuple[tuple[Network, ...], frozenset[str]]:
    nets, hosts = [], set()
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        try:
            nets.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry.lower().rstrip("."))
    return tuple(nets), frozenset(hosts)


@dataclass(frozen=True, kw_only=True)
class FetchPolicy:
    """What a fetch may touch. The default is :meth:`unrestricted`; the service uses :meth:`for_service`."""

    source_root: Path | None = None  # local sources must resolve inside; None: anywhere
    deny_private: bool = False  # refuse non-public addresses (unless allowed)
    allow: tuple[str, ...] = ()  # host names, addresses or networks allowed despite ``deny_private``
    own_ports: frozenset[int] = frozenset()  # the service's ports: refused on its own hosts and on loopback
    own_addresses: frozenset[str] = frozenset()  # addresses of this machine and of the service's hosts
    timeout: float = 600.0  # seconds per fetch step

    @classmethod
    def unrestricted(cls, *, timeout: float = 600.0) -> FetchPolicy:
        return cls(timeout=timeout)

    @classmethod
    def for_service(cls, settings: Any) -> FetchPolicy:
        """The service's policy: the settings' source root, private addresses and own endpoints denied."""
        ports: set[int] = {int(settings.api_port)}
        hosts: set[str] = {socket.gethostname(), socket.getfqdn(), str(settings.api_host)}
        for url in (settings.database_url, settings.broker_url, settings.s3_endpoint_url):
            if not url or "://" not in url:
                continue
            parts = urllib.parse.urlsplit(url)
            scheme = parts.scheme.split("+", 1)[0].lower()
            try:
                port = parts.port or DEFAULT_PORTS.get(scheme)
            except ValueError:
                port = None
            if port:
                ports.add(port)
            if parts.hostname:
                hosts.add(parts.hostname)
        addresses: set[str] = set()
        for host in hosts:
            try:
                for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM):
                    addresses.add(str(_inner(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))))
            except (OSError, UnicodeError, ValueError):
                continue
        return cls(
            source_root=Path(settings.source_root).resolve(),
            deny_private=True,
            allow=tuple(settings.fetch_allow),
            own_ports=frozenset(ports),
            own_addresses=frozenset(addresses),
            timeout=float(settings.fetch_timeout),
        )

    # ------------------------------------------------------------ network

    @property
    def restricts_network(self) -> bool:
        return self.deny_private or bool(self.own_ports)

    def refusal(self, host: str, address: str, port: int) -> str | None:
        """Why a connection to ``address`` (which ``host`` resolved to) on ``port`` is refused, or None."""
        ip = _inner(ipaddress.ip_address(address.split("%", 1)[0]))
        if port in self.own_ports and (ip.is_loopback or ip.is_unspecified or str(ip) in self.own_addresses):
            return "one of the service's own endpoints"
        if not self.deny_private or _public(ip):
            return None
        nets, hosts = _parse_allow(self.allow)
        if host.lower().rstrip(".") in hosts or any(ip in net for net in nets if net.version == ip.version):
            return None
        return "not a public address"

    def _refused(self, host: str, port: int, address: str, why: str) -> FetchRefusedError:
        # the detail (which address, which rule) is for the operator's log; the user learns no more
        # than that the name leads somewhere fetches may not go
        log.info("fetch policy: %s:%s resolves to %s (%s): refused", host, port, address, why)
        return FetchRefusedError(
            f"{host}:{port} is refused by the service's fetch policy (it resolves to a loopback, private, "
            "link-local or otherwise non-public address, or to one of the service's own endpoints; "
            "ASSEMBLAGE_FETCH_ALLOW lists allowed mirrors)"
        )

    def addresses(self, host: str, port: int) -> list[tuple[int, tuple]]:
        """``host`` resolved, each address checked: [(family, sockaddr)]. Raises when any is refused."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise SourceError(
                f"{host}: cannot resolve the host name ({getattr(exc, 'strerror', None) or exc})"
            ) from None
        out: list[tuple[int, tuple[Any, ...]]] = []
        for family, _type, _proto, _name, sockaddr in infos:
            address = str(sockaddr[0])  # an IP address (typeshed also allows the int of an AF_* family we never ask)
            why = self.refusal(host, address, port)
            if why:
                raise self._refused(host, port, address, why)
            out.append((family, sockaddr))
        if not out:
            raise SourceError(f"{host}: the host name has no address")
        return out

    def connect(self, host: str, port: int, timeout: float | None) -> socket.socket:
        """A TCP connection to ``host:port`` on an address this policy allows (resolved once, then used)."""
        if not self.restricts_network:
            return socket.create_connection((host, port), timeout)
        last: OSError | None = None
        for family, sockaddr in self.addresses(host, port):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                last = exc
        assert last is not None
        raise last

    def check_literal(self, url: str) -> str | None:
        """Why ``url`` is refused when its host is an IP address (no DNS: for the API's early answer), or None."""
        try:
            parts = urllib.parse.urlsplit(url)
            host, port = parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme.lower(), 0)
            ip = ipaddress.ip_address((host or "").split("%", 1)[0])
        except ValueError:
            return None
        return self.refusal(host or "", str(ip), port) and (
            f"{host} is an address the service does not fetch from (loopback, private, link-local or otherwise "
            "non-public, or one of the service's own endpoints; ASSEMBLAGE_FETCH_ALLOW lists allowed mirrors)"
        )

    def git_remote(self, url: str) -> tuple[str, tuple[str, ...], dict[str, str | None]]:
        """For a remote git URL: (the URL git is given, ``-c`` options, environment changes).

        Unrestricted: the URL as it is. Restricted: see the module's docstring.
        """
        if not self.restricts_network:
            return url, (), {}
        if not is_url(url):
            raise FetchRefusedError(f"{redact(url)}: the service does not fetch over ssh (use an https URL)")
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", "git"):
            raise FetchRefusedError(f"{redact(url)}: the service does not fetch git over {scheme} (use https)")
        host = parts.hostname or ""
        port = parts.port or DEFAULT_PORTS[scheme]
        checked = [sockaddr[0] for _family, sockaddr in self.addresses(host, port)]
        env: dict[str, str | None] = {name: None for name in _PROXY_VARIABLES}
        env["GIT_ALLOW_PROTOCOL"] = scheme
        if scheme in ("http", "https"):
            pinned = ",".join(f"[{a}]" if ":" in a else a for a in dict.fromkeys(checked))
            opts = (
                "-c",
                f"http.curloptResolve={host}:{port}:{pinned}",
                "-c",
                "http.followRedirects=false",
                "-c",
                "http.proxy=",
            )
            return url, opts, env
        address = checked[0]
        netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), (), env

    # ------------------------------------------------------------ local sources

    def local(self, ref: str, base: Path) -> Path:
        """A local path of a recipe, resolved. Restricted: against the source root only, and inside it."""
        if self.source_root is None:
            from assemblage.recipes.load import resolve_local

            return resolve_local(ref, base)
        root = self.source_root.resolve()
        target = (root / Path(ref).expanduser()).resolve()
        if not target.is_relative_to(root):
            raise FetchRefusedError(f"{redact(ref)}: outside the service's source root")
        return target

    def check_repository(self, repo: Path) -> None:
        """Restricted: refuse a local repository whose git data leads outside the source root.

        git reads objects through a ``.git`` file (``gitdir: ...``), ``commondir``, a
        symlinked ``objects`` folder and ``objects/info/alternates``; each must resolve
        inside the root, or a repository inside it could serve another one's objects.
        """
        if self.source_root is None:
            return
        root = self.source_root.resolve()

        def inside(path: Path, what: str) -> Path:
            real = path.resolve()
            if not real.is_relative_to(root):
                raise FetchRefusedError(f"{repo}: its {what} leads outside the service's source root")
            return real

        dot = repo / ".git"
        if dot.is_file():
            text = dot.read_text(encoding="utf-8", errors="replace").strip()
            gitdir = inside(repo / text.removeprefix("gitdir:").strip(), ".git file")
        elif dot.exists():
            gitdir = inside(dot, ".git folder")
        else:
            gitdir = inside(repo, "folder")
        common = gitdir
        if (gitdir / "commondir").is_file():
            rel = (gitdir / "commondir").read_text(encoding="utf-8", errors="replace").strip()
            common = inside(gitdir / rel, "commondir")
        objects = inside(common / "objects", "objects folder")
        alternates = objects / "info" / "alternates"
        if alternates.is_file():
            for line in alternates.read_text(encoding="utf-8", errors="replace").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    inside(objects / line, "alternates")
