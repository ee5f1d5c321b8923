"""Source URLs: the checks the recipe model makes, the local paths ``file://`` names, and redaction.

A leaf module (it imports nothing of the package), because the recipe model, the
fetchers, the pipeline and the API all need it and the recipe model sits below the
fetchers.

Checking happens when a recipe is validated, so a URL that ``urllib`` or git would
choke on later (``http://[::1/x.tgz``: an unclosed IPv6 bracket made ``start_run``
raise ``ValueError`` and the sweeper re-send it for ever) is a located recipe
error instead: 422 from the API, exit 2 from ``assemblage recipe check``.

Redaction: a recipe may carry credentials in a URL (``https://user:token@host/x.git``,
``?access_token=...``). :func:`redact` replaces them with ``***`` in any text, and is
applied to everything that is shown or logged: source labels and URLs in the
database, error messages, the CLI summary. The full URL stays only where the fetch
needs it (the recipe text and the source's spec, which no API answer returns).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
import urllib.request
from typing import Any

__all__ = [
    "ARCHIVE_SCHEMES",
    "GIT_SCHEMES",
    "check_url",
    "file_url_path",
    "is_file_url",
    "is_url",
    "redact",
    "redact_document",
]

ARCHIVE_SCHEMES = ("https", "http", "file")
GIT_SCHEMES = ("https", "http", "git", "ssh", "file")
# a host name as DNS writes it (underscores appear in private zones); IP literals are checked apart
_HOSTNAME = re.compile(
    r"^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$"
)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#]*@")
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:access_token|private_token|auth_token|token|password|passwd|pwd|secret|api_key|apikey|key"
    r"|sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&#;\s'\"]*"
)


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``.

    ``https://user:token@host/x`` -> ``https://***@host/x`` (a user name alone is
    redacted too: GitHub takes a token as the user name), and the values of query
    parameters named like secrets (``token``, ``access_token``, ``sig``,
    ``X-Amz-Signature``...) -> ``***``.
    """
    if not text or ("://" not in text and "=" not in text):
        return text
    return _SECRET_QUERY.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


def redact_document(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, strings) with :func:`redact` applied to every string in it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_document(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_document(v) for v in value]
    return value


def is_url(ref: str) -> bool:
    return "://" in ref


def is_file_url(ref: str) -> bool:
    return ref[:7].lower() == "file://"


def file_url_path(ref: str) -> str:
    """The local path a ``file://`` URL names (``file:///srv/x.git`` -> ``/srv/x.git``)."""
    parts = urllib.parse.urlsplit(ref)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"a file:// URL names a path on this machine, not on {parts.netloc!r}")
    path = urllib.request.url2pathname(parts.path)
    if not path.startswith("/"):
        raise ValueError("a file:// URL needs an absolute path (file:///path)")
    return path


def check_url(url: str, schemes: tuple[str, ...]) -> str:
    """Raise ``ValueError`` (a message that never repeats credentials) unless ``url`` is usable.

    Checks the scheme, that it parses (IPv6 brackets, port range), that a network
    URL names a host that is a DNS name or an IP literal, and that no spaces or
    control characters hide in it. Returns the URL unchanged.
    """
    shown = redact(url)
    if _CONTROL.search(url):
        raise ValueError(f"{shown!r}: a URL cannot contain spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{shown!r} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise ValueError(f"{shown!r}: unsupported URL scheme {scheme!r} (use one of {', '.join(schemes)})")
    if scheme == "file":
        file_url_path(url)
        return url
    host = parts.hostname
    if not host:
        raise ValueError(f"{shown!r}: the URL names no host")
    if "[" in parts.netloc.rpartition("@")[2]:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"{shown!r}: {host!r} is not an IPv6 address") from None
    elif not _HOSTNAME.match(host):
        raise ValueError(f"{shown!r}: {host!r} is not a host name")
    if port == 0:
        raise ValueError(f"{shown!r}: port 0 is not a port")
    return url
