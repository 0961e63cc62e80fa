"""Redis URLs as users write them: passwords with reserved characters, and
masking for anything that is printed.

A password such as ``S3#c/r@t`` written raw into ``redis://:S3#c/r@t@host/0``
breaks URL parsing (``#`` starts a fragment, ``/`` a path), so the user-info is
taken as everything between ``scheme://`` and the last ``@`` before the host
and percent-encoded; redis-py's ``from_url`` unquotes it back. This module has
no imports from the rest of pynenc_ray, so config and backends can both use it.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

SCHEMES = ("redis", "rediss", "unix")
_MASK = "***"
# a "%" that does not start a percent-escape is a literal percent sign
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# unreserved and sub-delims of RFC 3986 stay as they are; "%" starts an escape
_SAFE = "-._~!$&'()*+,;=%"
# a secret passed as a query argument (redis-py reads ?password=...), up to the next one
_SECRET_QUERY = re.compile(r"([?&][^=&#]*pass[^=&#]*=)[^&#]*", re.IGNORECASE)


def _split(url: str) -> tuple[str, str | None, str]:
    """``(scheme://, user-info or None, host and the rest)``, split at the last
    ``@``. Without ``://`` the whole URL is returned as the rest."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", None, url
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return scheme + sep, None, rest
    return scheme + sep, userinfo, host


def _encode(part: str) -> str:
    """Percent-encode one user-info part, keeping escapes already present."""
    return quote(_LONE_PERCENT.sub("%25", part), safe=_SAFE)


def normalize_redis_url(url: str) -> str:
    """``url`` with its user name and password percent-encoded, so that any
    character in a password survives parsing. Already-encoded input (``%23``)
    is kept as it is, so normalizing twice changes nothing."""
    head, userinfo, rest = _split(url)
    if userinfo is None:
        return url
    user, colon, password = userinfo.partition(":")
    encoded = _encode(user) + (":" + _encode(password) if colon else "")
    return f"{head}{encoded}@{rest}"


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for messages and ``config
    show``. Works on URLs that do not parse, so an error about a bad URL can
    show it without the password, in the user-info or in the query string
    (``?password=...``, any argument whose name says ``pass``)."""
    url = _SECRET_QUERY.sub(lambda m: m.group(1) + _MASK, url)
    head, userinfo, rest = _split(url)
    if userinfo is None or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{head}{user}:{_MASK}@{rest}"


def url_problem(url: str) -> str | None:
    """Why redis-py could not use ``url`` (a normalized one), or None if it can.
    The reason never contains the user-info."""
    head, _, rest = _split(url)
    scheme = head[:-3].lower()
    if not head:
        return "it has no scheme; write e.g. redis://host:6379/0 (rediss:// for TLS)"
    if scheme not in SCHEMES:
        return (f"scheme {scheme!r} is not redis://, rediss:// (TLS) or unix://; write "
                "e.g. redis://host:6379/0")
    if scheme == "unix":
        return None
    try:
        _ = urlsplit(f"{head}{rest}").port  # the host part alone: no password in the reason
    except ValueError as exc:
        return f"its host:port part {rest.split('/', 1)[0]!r} has a bad port ({exc})"
    return None
