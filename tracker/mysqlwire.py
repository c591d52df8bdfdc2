"""Talking to MySQL, for the MySQL source and the fleet's MySQL log alike: pymysql's TLS
arguments for a configured mode, and every failure as a secret-free (kind, one line).

Standard library only at import (pymysql's errors are recognised by their module's name), so
the log's wing and the watcher's both use it without importing each other.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

from tracker.config import MySQLSettings, is_loopback

# Short, secret-free names for what went wrong in a poll; `stats` groups errors by them.
ErrorKind = Literal[
    "timeout",  # the request or query timed out
    "connection",  # refused, reset, DNS, TLS: no answer at all
    "rate_limited",  # HTTP 429
    "server_error",  # HTTP 5xx
    "client_error",  # other HTTP 4xx (401 and 403 included: "auth" is set apart below)
    "auth",  # 401/403, or the database refused our credentials
    "malformed",  # an answer we could not understand
    "database",  # any other database error
]
MAX_ERROR_CHARS = 200
MIN_SCRUBBED_SECRET = 4
# pymysql / MySQL error numbers that mean "not allowed in".
_AUTH_ERRORS = {1044, 1045, 1698, 1862, 2049}
# Client-side errors: no connection, lost connection, TLS failure.
_CONNECTION_ERRORS = {2002, 2003, 2005, 2006, 2013, 2026, 2055}


def tls_arguments(settings: MySQLSettings) -> dict[str, Any]:
    """pymysql's TLS arguments for the configured mode.

    `required` verifies the certificate (against `ssl_ca`, else the system store) and the host
    name; `disabled` never negotiates TLS; `preferred` is pymysql's own default (TLS when the
    server offers it, with no verification).
    """
    if settings.ssl == "disabled":
        return {"ssl_disabled": True}
    if settings.ssl == "preferred":
        return {}
    context = ssl.create_default_context(cafile=settings.ssl_ca)
    return {"ssl": context}


def describe_error(exc: BaseException, settings: MySQLSettings) -> tuple[ErrorKind, str]:
    """A secret-free (kind, one-line message) for any exception a poll can raise."""
    code = _error_code(exc)
    where = f"{settings.host}:{settings.port}"
    reason = scrub(_reason(exc), settings.password)
    if code in _AUTH_ERRORS:
        return "auth", f"MySQL refused user {settings.user!r} on {where} (error {code})"
    if _is_timeout(exc):
        return "timeout", timeout_message(settings)
    if code == 2026 or isinstance(exc, ssl.SSLError):
        return "connection", _tls_message(exc, settings)
    if code in _CONNECTION_ERRORS or isinstance(exc, OSError) or _is_interface_error(exc):
        return "connection", f"MySQL on {where}: {reason}"
    if code is not None and code > 0:
        return "database", f"MySQL error {code}: {reason}"
    # No error number: the bytes on the wire were not the MySQL protocol we know.
    return (
        "malformed",
        f"MySQL on {where} sent what we cannot read ({type(exc).__name__}: {reason})",
    )


def timeout_message(settings: MySQLSettings) -> str:
    where = f"{settings.host}:{settings.port}"
    return f"MySQL on {where} did not answer within {settings.connect_timeout:g} s"


def scrub(text: str, secret: str) -> str:
    """`text` on one short line, with every occurrence of `secret` (and its URL form) masked."""
    from urllib.parse import quote

    if len(secret) >= MIN_SCRUBBED_SECRET:  # masking every "x" would only garble the text
        for form in {secret, quote(secret, safe="")}:
            text = text.replace(form, "***")
    line = " ".join(text.split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 3] + "..."


def _error_code(exc: BaseException) -> int | None:
    if _is_pymysql_error(exc) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def _is_pymysql_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("pymysql")


def _is_interface_error(exc: BaseException) -> bool:
    return _is_pymysql_error(exc) and type(exc).__name__ == "InterfaceError"


def _reason(exc: BaseException) -> str:
    if _is_pymysql_error(exc) and len(exc.args) >= 2:
        return str(exc.args[1])
    return str(exc) or type(exc).__name__


def _is_timeout(exc: BaseException) -> bool:
    original = getattr(exc, "original_exception", None)
    if isinstance(exc, TimeoutError) or isinstance(original, TimeoutError):
        return True
    return _error_code(exc) in (2003, 2013) and "timed out" in _reason(exc)


def _tls_message(exc: BaseException, settings: MySQLSettings) -> str:
    where = f"{settings.host}:{settings.port}"
    if _error_code(exc) == 2026:
        hint = "set TRACKER_MYSQL_SSL=disabled only if the network is trusted"
        if not is_loopback(settings.host):
            hint = "enable TLS on the server"
        return f"MySQL on {where} does not offer TLS, which is required ({hint})"
    reason = scrub(str(exc), settings.password)
    return f"TLS with MySQL on {where} failed: {reason} (TRACKER_MYSQL_SSL_CA names a CA file)"
