"""Settings: flag > environment > file > default (SPEC §6).

Secrets (`DIGITALOCEAN_TOKEN`, `DB_PASS`, the password in `TRACKER_MYSQL_URL`) come only from the
environment. Non-secret settings may also live in `[tool.tracker]` of the repository's
`pyproject.toml` or, with the same keys at top level, in `.tracker.toml` (which wins over
pyproject). Every bad value raises one `ConfigError` line naming where it came from; a secret is
never echoed, and never kept in a `repr()`.

A setting that decides where a secret is sent or whether TLS protects it (`ENV_ONLY`) comes only
from the environment or a flag: anyone who can commit a file could otherwise send the team's
token to a host of their own after an ordinary push. A file that sets one is refused without
stopping anything: the value is not used and `Settings.refused` names it (for `tracker doctor`).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from tracker.errors import ConfigError

MAX_DURATION_S = 7 * 24 * 3600.0  # anything longer is a typo (milliseconds for seconds)
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")  # table and column names: no SQL
SslMode = Literal["required", "disabled", "preferred"]

_SSL_ALIASES: dict[str, SslMode] = {
    "required": "required",
    "require": "required",
    "true": "required",
    "on": "required",
    "1": "required",
    "disabled": "disabled",
    "disable": "disabled",
    "false": "disabled",
    "off": "disabled",
    "0": "disabled",
    "preferred": "preferred",
    "prefer": "preferred",
}

# Non-secret settings: the key used in files and overrides, and the environment variable(s).
ENV_NAMES: dict[str, str] = {
    "branch": "TRACKER_BRANCH",
    "poll_policy": "TRACKER_POLL_POLICY",
    "poll_interval": "TRACKER_POLL_INTERVAL",
    "poll_initial": "TRACKER_POLL_INITIAL",
    "poll_switch_after": "TRACKER_POLL_SWITCH_AFTER",
    "poll_long": "TRACKER_POLL_LONG",
    "poll_lag_budget": "TRACKER_POLL_LAG_BUDGET",
    "poll_max_interval": "TRACKER_POLL_MAX_INTERVAL",
    "max_wait": "TRACKER_MAX_WAIT",
    "http_timeout": "TRACKER_HTTP_TIMEOUT",
    "lock_timeout": "TRACKER_LOCK_TIMEOUT",
    "synchronous": "TRACKER_SYNCHRONOUS",
    "do_app_id": "TRACKER_DO_APP_ID",
    "do_api_url": "TRACKER_DO_API_URL",
    "mysql_host": "DB_HOST",
    "mysql_port": "DB_PORT",
    "mysql_user": "DB_USER",
    "mysql_database": "DB_NAME",
    "mysql_ssl": "TRACKER_MYSQL_SSL",
    "mysql_ssl_ca": "TRACKER_MYSQL_SSL_CA",
    "mysql_table": "TRACKER_MYSQL_TABLE",
    "mysql_sha_column": "TRACKER_MYSQL_SHA_COLUMN",
    "mysql_status_column": "TRACKER_MYSQL_STATUS_COLUMN",
    "mysql_time_column": "TRACKER_MYSQL_TIME_COLUMN",
    "mysql_connect_timeout": "TRACKER_MYSQL_CONNECT_TIMEOUT",
}
# Where a secret goes and whether TLS protects it: the environment or a flag, never a file. The
# values are what a file's key is refused in favour of (`mysql_url` and `log_url` name the URL
# variables, which a file could otherwise smuggle in under their own names).
ENV_ONLY: dict[str, str] = {
    "do_api_url": "TRACKER_DO_API_URL",
    "mysql_host": "DB_HOST",
    "mysql_port": "DB_PORT",
    "mysql_ssl": "TRACKER_MYSQL_SSL",
    "mysql_ssl_ca": "TRACKER_MYSQL_SSL_CA",
    "mysql_url": "TRACKER_MYSQL_URL",
    "log_url": "TRACKER_LOG_URL",
}
# Secrets: environment only.
SECRET_ENV = {"do_token": "DIGITALOCEAN_TOKEN", "mysql_password": "DB_PASS"}
MYSQL_URL_ENV = "TRACKER_MYSQL_URL"
_SECRET_WORDS = ("token", "password", "passwd", "secret", "pass", "mysql_url", "url")

# (minimum, whether the minimum itself is allowed) for each duration key.
_DURATIONS: dict[str, bool] = {  # True: must be > 0; False: >= 0 is fine
    "poll_interval": True,
    "poll_initial": True,
    "poll_switch_after": False,
    "poll_long": True,
    "poll_lag_budget": True,
    "poll_max_interval": True,
    "max_wait": False,
    "http_timeout": True,
    "lock_timeout": False,
    "mysql_connect_timeout": True,
}


@dataclass(frozen=True)
class DigitalOceanSettings:
    """Where and as whom to ask the App Platform API."""

    token: str = field(repr=False)
    app_id: str
    api_url: str = "https://api.digitalocean.com"


@dataclass(frozen=True)
class MySQLSettings:
    """The deployments table: connection, TLS mode, and the (identifier-checked) names."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    ssl: SslMode
    table: str = "deployments"
    sha_column: str = "commitSha"
    status_column: str = "status"
    time_column: str = "createdAt"
    connect_timeout: float = 10.0
    ssl_ca: str | None = None  # a CA bundle for `required`; the system store otherwise


@dataclass(frozen=True)
class Settings:
    """Everything configurable, resolved and validated."""

    branch: str = "main"
    poll_policy: str = "informed"
    poll_interval: float = 10.0
    poll_initial: float = 5.0
    poll_switch_after: float = 120.0
    poll_long: float = 15.0
    poll_lag_budget: float = 0.5
    poll_max_interval: float = 30.0
    max_wait: float = 480.0  # unset (origin "default"): max(480, 3 × the app's p95), monitor.py
    http_timeout: float = 10.0
    lock_timeout: float = 10.0
    synchronous: str = "FULL"
    do: DigitalOceanSettings | None = None
    mysql: MySQLSettings | None = None
    notes: tuple[str, ...] = ()  # half-configured sources and weakened TLS, for doctor
    refused: tuple[str, ...] = ()  # file keys that may only come from the environment (ENV_ONLY)
    origins: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def sources(self) -> list[str]:
        """Names of the configured sources, in polling order (the cheap database first)."""
        return [name for name, cfg in (("mysql", self.mysql), ("digitalocean", self.do)) if cfg]

    def describe(self) -> dict[str, Any]:
        """Every non-secret setting, secrets as "set"/"unset", and where each value came from."""
        plain = {key: getattr(self, key) for key in _SCALAR_KEYS}
        return {
            "sources": self.sources(),
            **plain,
            "digitalocean": _describe_do(self.do),
            "mysql": _describe_mysql(self.mysql),
            "origins": dict(self.origins),
            "notes": list(self.notes),
            "refused": list(self.refused),
        }


_SCALAR_KEYS = (
    "branch",
    "poll_policy",
    "poll_interval",
    "poll_initial",
    "poll_switch_after",
    "poll_long",
    "poll_lag_budget",
    "poll_max_interval",
    "max_wait",
    "http_timeout",
    "lock_timeout",
    "synchronous",
)


def _describe_do(do: DigitalOceanSettings | None) -> dict[str, Any]:
    if do is None:
        return {"configured": False}
    token = "set" if do.token else "unset"
    return {"configured": True, "app_id": do.app_id, "api_url": do.api_url, "token": token}


def _describe_mysql(my: MySQLSettings | None) -> dict[str, Any]:
    if my is None:
        return {"configured": False}
    names = ("host", "port", "user", "database", "ssl", "ssl_ca", "table")
    columns = ("sha_column", "status_column", "time_column", "connect_timeout")
    out: dict[str, Any] = {"configured": True}
    out.update({name: getattr(my, name) for name in names + columns})
    out["password"] = "set" if my.password else "unset"
    return out


# --- the layers -------------------------------------------------------------------------------


class _Layers:
    """Raw values by key, highest precedence first, each with the place it came from."""

    def __init__(self, *layers: dict[str, tuple[object, str]]) -> None:
        self._layers = layers
        self.origins: dict[str, str] = {}

    def get(self, key: str) -> tuple[object, str] | None:
        for layer in self._layers:
            if key in layer:
                self.origins[key] = layer[key][1]
                return layer[key]
        return None


def load_settings(
    repo_root: Path | None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Resolve the settings for the repository at `repo_root` (None: read no file)."""
    environ = os.environ if env is None else env
    refused: list[str] = []
    layers = _Layers(
        _override_layer(overrides or {}),
        _env_layer(environ),
        _file_layer(repo_root, refused) if repo_root is not None else {},
    )
    scalars = _resolve_scalars(layers)
    notes: list[str] = []
    do = _resolve_do(layers, notes)
    mysql = _resolve_mysql(layers, notes)
    return Settings(
        **scalars,
        do=do,
        mysql=mysql,
        notes=tuple(notes),
        refused=tuple(refused),
        origins=layers.origins,
    )


def _override_layer(overrides: Mapping[str, object]) -> dict[str, tuple[object, str]]:
    layer: dict[str, tuple[object, str]] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in ENV_NAMES:
            raise ConfigError(f"unknown setting {key!r} given as an option")
        layer[key] = (value, f"option {key}")
    return layer


def _env_layer(environ: Mapping[str, str]) -> dict[str, tuple[object, str]]:
    layer: dict[str, tuple[object, str]] = {}
    for key, var in {**ENV_NAMES, **SECRET_ENV}.items():
        value = environ.get(var, "")
        if value != "":
            layer[key] = (value, var)
    url = environ.get(MYSQL_URL_ENV, "")
    if url:
        layer.update({k: (v, MYSQL_URL_ENV) for k, v in parse_mysql_url(url).items()})
    return layer


def parse_mysql_url(url: str) -> dict[str, object]:
    """`mysql://user:password@host:port/database?ssl=required` as setting keys.

    Error messages name the part that is wrong and never repeat the URL (it holds a password).
    """
    where = MYSQL_URL_ENV
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{where}: the port is not a number from 1 to 65535") from None
    if parts.scheme not in ("mysql", "mysql+pymysql"):
        raise ConfigError(f"{where}: must start with mysql:// (mysql://user:pass@host/db)")
    if not parts.hostname:
        raise ConfigError(f"{where}: has no host (mysql://user:pass@host:port/database)")
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ConfigError(f"{where}: has no database name (mysql://user:pass@host:port/database)")
    out: dict[str, object] = {"mysql_host": parts.hostname, "mysql_database": database}
    if port is not None:
        out["mysql_port"] = port
    if parts.username:
        out["mysql_user"] = unquote(parts.username)
    if parts.password is not None:
        out["mysql_password"] = unquote(parts.password)
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in ("ssl", "ssl_mode", "ssl-mode", "sslmode"):
            out["mysql_ssl"] = value
        elif name in ("ssl_ca", "ssl-ca"):
            out["mysql_ssl_ca"] = value
        else:
            raise ConfigError(
                f"{where}: unknown query parameter {name[:40]!r} (known: ssl, ssl_ca)"
            )
    return out


def _file_layer(repo_root: Path, refused: list[str]) -> dict[str, tuple[object, str]]:
    layer: dict[str, tuple[object, str]] = {}
    pyproject = repo_root / "pyproject.toml"
    if pyproject.is_file():
        table = _read_toml(pyproject).get("tool", {})
        section = table.get("tracker", {}) if isinstance(table, dict) else {}
        layer.update(_file_values(section, "[tool.tracker] in pyproject.toml", refused))
    dotfile = repo_root / ".tracker.toml"
    if dotfile.is_file():
        layer.update(_file_values(_read_toml(dotfile), ".tracker.toml", refused))
    return layer


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from exc


def _file_values(section: object, where: str, refused: list[str]) -> dict[str, tuple[object, str]]:
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: must be a table of settings")
    layer: dict[str, tuple[object, str]] = {}
    for raw_key, value in section.items():
        key = raw_key.strip().lower().replace("-", "_")
        key = _ENV_ONLY_BY_VAR.get(key, key)  # `TRACKER_DO_API_URL = ...` is the same key
        if key in ENV_ONLY:
            refused.append(refusal(raw_key, where, ENV_ONLY[key]))
            continue  # not used: the value is never read, let alone checked or shown
        if any(word in key for word in _SECRET_WORDS) and key not in ENV_NAMES:
            raise ConfigError(
                f"{raw_key!r} in {where}: secrets come only from the environment "
                f"(DIGITALOCEAN_TOKEN, DB_PASS, TRACKER_MYSQL_URL), never from a file"
            )
        if key not in ENV_NAMES:
            raise ConfigError(f"{raw_key!r} in {where}: unknown setting")
        layer[key] = (value, f"{raw_key} in {where}")
    return layer


_ENV_ONLY_BY_VAR = {var.lower(): key for key, var in ENV_ONLY.items()}


def refusal(raw_key: str, where: str, variable: str) -> str:
    """The one line `doctor` shows for a file key that may only come from the environment."""
    shown = raw_key if raw_key.isprintable() and len(raw_key) <= 60 else repr(raw_key[:60])
    return (
        f"{shown} in {where} is refused and not used: where a secret is sent and whether TLS"
        f" protects it come only from the environment or a flag (set {variable} instead)"
    )


# --- validation -------------------------------------------------------------------------------


def _bad(origin: str, problem: str, value: object) -> ConfigError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ConfigError(f"{origin}: {problem}, got {shown}")


def _duration(value: object, origin: str, positive: bool) -> float:
    """Seconds as a finite number, fractions welcome, at most seven days."""
    problem = f"must be a number of seconds {'> 0' if positive else '>= 0'} and at most 7 days"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _bad(origin, problem, value)
    try:
        seconds = float(value)
    except ValueError:
        raise _bad(origin, problem, value) from None
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        raise _bad(origin, problem, value)
    if seconds > MAX_DURATION_S:
        raise _bad(origin, problem, value)
    return seconds


def _text(value: object, origin: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(origin, "must be a non-empty string", value)
    return value.strip()


def _choice(value: object, origin: str, choices: tuple[str, ...]) -> str:
    text = _text(value, origin).lower()
    for choice in choices:
        if text == choice.lower():
            return choice
    raise _bad(origin, f"must be one of {', '.join(choices)}", value)


def identifier(value: object, origin: str) -> str:
    """A plain SQL identifier (letters, digits, underscore): the only way a name enters SQL."""
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise _bad(origin, "must be a plain identifier (letters, digits, _; at most 64)", value)
    return value


_BAD_REF = re.compile(r"[\s\x00-\x1f\x7f~^:?*\[\\]|\.\.|@\{|//|^-|^/|/$|\.lock$|\.$")


def _branch(value: object, origin: str) -> str:
    name = _text(value, origin).removeprefix("refs/heads/")
    if _BAD_REF.search(name):
        raise _bad(origin, "is not a valid branch name", value)
    return name


def _resolve_scalars(layers: _Layers) -> dict[str, Any]:
    defaults = Settings()
    out: dict[str, Any] = {}
    for key in _SCALAR_KEYS:
        found = layers.get(key)
        if found is None:
            out[key] = getattr(defaults, key)
            layers.origins[key] = "default"
            continue
        value, origin = found
        if key in _DURATIONS:
            out[key] = _duration(value, origin, _DURATIONS[key])
        elif key == "poll_policy":
            out[key] = _choice(value, origin, ("informed", "fixed", "stepped"))
        elif key == "synchronous":
            out[key] = _choice(value, origin, ("FULL", "NORMAL"))
        else:
            out[key] = _branch(value, origin)
    return out


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _resolve_do(layers: _Layers, notes: list[str]) -> DigitalOceanSettings | None:
    secret = layers.get("do_token")
    token = str(secret[0]) if secret else ""
    app = layers.get("do_app_id")
    url = layers.get("do_api_url")
    api_url = _api_url(*url) if url else DigitalOceanSettings.api_url
    if not token or app is None:
        if token or app is not None:
            missing = "TRACKER_DO_APP_ID" if token else "DIGITALOCEAN_TOKEN"
            notes.append(f"DigitalOcean is not watched: {missing} is not set")
        return None
    if any(ch.isspace() for ch in token):
        raise ConfigError("DIGITALOCEAN_TOKEN: contains whitespace (value not shown)")
    app_id = _text(app[0], app[1])
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", app_id):
        raise _bad(app[1], "must be an App Platform app id (letters, digits, -)", app[0])
    return DigitalOceanSettings(token=token, app_id=app_id, api_url=api_url)


def _api_url(value: object, origin: str) -> str:
    """An http(s) base URL; plain http only to loopback, so the token never travels in clear."""
    text = _text(value, origin).rstrip("/")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise _bad(origin, "is not a valid URL", value) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _bad(origin, "must be an http(s) URL such as https://api.digitalocean.com", value)
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(f"{origin}: must be a plain base URL (no credentials, query or #)")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise _bad(origin, "must use https for a host that is not loopback", value)
    return text


def _resolve_mysql(layers: _Layers, notes: list[str]) -> MySQLSettings | None:
    host_found = layers.get("mysql_host")
    if host_found is None:
        partial = [
            key for key in ("mysql_database", "mysql_user", "mysql_password") if layers.get(key)
        ]
        if partial:
            notes.append("MySQL is not watched: DB_HOST (or TRACKER_MYSQL_URL) is not set")
        return None
    host = _text(*host_found)
    port = _port(*(layers.get("mysql_port") or (3306, "default")))
    user = _required_text(layers, "mysql_user", "the MySQL user (DB_USER or TRACKER_MYSQL_URL)")
    database = _required_text(
        layers, "mysql_database", "the MySQL database (DB_NAME or TRACKER_MYSQL_URL)"
    )
    secret = layers.get("mysql_password")
    ssl = _ssl_mode(layers, host, notes)
    names = {
        key: identifier(*found)
        for key in ("table", "sha_column", "status_column", "time_column")
        if (found := layers.get(f"mysql_{key}")) is not None
    }
    timeout = layers.get("mysql_connect_timeout")
    return MySQLSettings(
        host=host,
        port=port,
        user=user,
        password=str(secret[0]) if secret else "",
        database=database,
        ssl=ssl,
        connect_timeout=_duration(*timeout, positive=True) if timeout else 10.0,
        ssl_ca=_ssl_ca(layers),
        **names,
    )


def _required_text(layers: _Layers, key: str, what: str) -> str:
    found = layers.get(key)
    if found is None:
        raise ConfigError(f"{what} is not set")
    return _text(*found)


def _port(value: object, origin: str) -> int:
    problem = "must be a port number from 1 to 65535"
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _bad(origin, problem, value)
    try:
        port = int(value)
    except ValueError:
        raise _bad(origin, problem, value) from None
    if not 1 <= port <= 65535:
        raise _bad(origin, problem, value)
    return port


def _ssl_mode(layers: _Layers, host: str, notes: list[str]) -> SslMode:
    """TLS is required for every host that is not loopback, unless explicitly turned off."""
    found = layers.get("mysql_ssl")
    if found is None:
        return "preferred" if is_loopback(host) else "required"
    value, origin = found
    mode = _SSL_ALIASES.get(str(value).strip().lower()) if isinstance(value, str | bool) else None
    if isinstance(value, bool):
        mode = "required" if value else "disabled"
    if mode is None:
        raise _bad(origin, "must be required, preferred or disabled", value)
    if mode != "required" and not is_loopback(host):
        notes.append(f"MySQL TLS to {host} is {mode} by {origin}: the password may travel in clear")
    return mode


def _ssl_ca(layers: _Layers) -> str | None:
    found = layers.get("mysql_ssl_ca")
    if found is None:
        return None
    path = Path(_text(*found)).expanduser()
    if not path.is_file():
        raise _bad(found[1], "is not a readable CA certificate file", str(path))
    return str(path)
