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

from tracker.errors import ConfigError, TrackerError

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
    "api_budget_per_minute": "TRACKER_API_BUDGET_PER_MINUTE",
    "api_budget_per_hour": "TRACKER_API_BUDGET_PER_HOUR",
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
    # The token's API calls every monitor of it may make (fleet-wide in fleet mode, SPEC §10);
    # None: the platform's limits times `tracker.monitor.decide.BUDGET_SHARE`.
    api_budget_per_minute: int | None = None
    api_budget_per_hour: int | None = None
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
    "api_budget_per_minute",
    "api_budget_per_hour",
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


# What reading and recording the log needs; every other setting only the monitor uses.
READ_KEYS = ("branch", "lock_timeout", "synchronous")


@dataclass(frozen=True)
class ReadSettings:
    """The settings reads (`status`, `events`, `stats`, `wait`, `query`) and recording a push
    need: the lock timeout, the log's `synchronous` and the deployed branch. A setting only the
    monitor uses never stops them (SPEC §4); neither does a broken settings file, which is said
    in `warnings` (one line each) and left out."""

    branch: str = "main"
    lock_timeout: float = 10.0
    synchronous: str = "FULL"
    warnings: tuple[str, ...] = ()

    @classmethod
    def of(cls, settings: Settings) -> ReadSettings:
        return cls(settings.branch, settings.lock_timeout, settings.synchronous)


def load_read_settings(
    repo_root: Path | None, env: Mapping[str, str] | None = None
) -> ReadSettings:
    """The read settings: a bad one in the environment raises `ConfigError` (78); a bad file,
    or a bad value in one, is a warning and the next layer (or the default) is used."""
    environ = os.environ if env is None else env
    problems: list[str] = []
    from_env = {
        key: (environ[ENV_NAMES[key]], ENV_NAMES[key])
        for key in READ_KEYS
        if environ.get(ENV_NAMES[key], "") != ""
    }
    from_file = _file_layer(repo_root, [], problems) if repo_root is not None else {}
    defaults = Settings()
    out: dict[str, Any] = {}
    for key in READ_KEYS:
        out[key] = getattr(defaults, key)
        if key in from_env:
            out[key] = _scalar(key, *from_env[key])
        elif key in from_file:
            try:
                out[key] = _scalar(key, *from_file[key])
            except ConfigError as exc:
                problems.append(f"{exc}; it is not used")
    return ReadSettings(**out, warnings=tuple(problems))


def source_names(repo_root: Path | None, env: Mapping[str, str] | None = None) -> list[str]:
    """The sources that are configured, judged by which settings are set, valid or not; never
    raises. Where the settings are valid this is `load_settings(...).sources()`; where they are
    not, a push still gets a monitor, which refuses them and records why (`MonitorNotStarted`)."""
    environ = os.environ if env is None else env
    names = []
    if environ.get("DB_HOST", "") or environ.get(MYSQL_URL_ENV, ""):
        names.append("mysql")
    if environ.get("DIGITALOCEAN_TOKEN", ""):
        app = environ.get("TRACKER_DO_APP_ID", "")
        if not app and repo_root is not None:
            try:
                app = str(_file_layer(repo_root, [], []).get("do_app_id", ("", ""))[0])
            except Exception:  # a presence check says "not set"; it never fails
                app = ""
        if app:
            names.append("digitalocean")
    return names


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


def parse_mysql_url(url: str, where: str = MYSQL_URL_ENV) -> dict[str, object]:
    """`mysql://user:password@host:port/database?ssl=required` as setting keys (`where`: the
    variable it came from, for the messages).

    Error messages name the part that is wrong and never repeat the URL (it holds a password).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(
            f"{where}: the port is not a number from 1 to 65535", setting=where
        ) from None
    if parts.scheme not in ("mysql", "mysql+pymysql"):
        raise ConfigError(
            f"{where}: must start with mysql:// (mysql://user:pass@host/db)", setting=where
        )
    if not parts.hostname:
        raise ConfigError(
            f"{where}: has no host (mysql://user:pass@host:port/database)", setting=where
        )
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ConfigError(
            f"{where}: has no database name (mysql://user:pass@host:port/database)",
            setting=where,
        )
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
                f"{where}: unknown query parameter {name[:40]!r} (known: ssl, ssl_ca)",
                setting=where,
            )
    return out


LOG_URL_ENV = "TRACKER_LOG_URL"
LOG_PASSWORD_ENV = "TRACKER_LOG_PASSWORD"  # noqa: S105 (the variable's name)


def log_settings(url: str, env: Mapping[str, str]) -> MySQLSettings:
    """The fleet's shared log (`TRACKER_LOG_URL`, SPEC §10) as MySQL settings, checked as
    `TRACKER_MYSQL_URL` is; the password from `TRACKER_LOG_PASSWORD` (else the URL's, which comes
    from the environment too); TLS may not be weakened for a host that is not loopback."""
    layer = {k: (v, LOG_URL_ENV) for k, v in parse_mysql_url(url, LOG_URL_ENV).items()}
    if LOG_PASSWORD_ENV in env:
        layer["mysql_password"] = (env[LOG_PASSWORD_ENV], LOG_PASSWORD_ENV)
    layer.setdefault("mysql_port", (3306, "default"))
    settings = _resolve_mysql(_Layers(layer), [])
    assert settings is not None  # parse_mysql_url always gives the host
    if settings.ssl != "required" and not is_loopback(settings.host):
        raise ConfigError(
            f"{LOG_URL_ENV}: TLS must be required for {settings.host} (?ssl=required): the"
            " shared log's password would travel in clear",
            setting=LOG_URL_ENV,
        )
    return settings


MAX_FILE_BYTES = 1_000_000  # a settings file is a few lines; anything this big is not one


def _file_layer(
    repo_root: Path, refused: list[str], problems: list[str] | None = None
) -> dict[str, tuple[object, str]]:
    """The settings of `pyproject.toml` and `.tracker.toml` (which wins). With `problems`, a
    broken file or key is said there and left out instead of raised (what reads do: a broken
    settings file never stops them, SPEC §4)."""
    layer: dict[str, tuple[object, str]] = {}
    for name, where in (
        ("pyproject.toml", "[tool.tracker] in pyproject.toml"),
        (".tracker.toml", ".tracker.toml"),
    ):
        path = repo_root / name
        try:
            if not path.is_file():
                continue
            table = _read_toml(path)
            if name == "pyproject.toml":
                tool = table.get("tool", {})
                table = tool.get("tracker", {}) if isinstance(tool, dict) else {}
            layer.update(_file_values(table, where, refused, problems))
        except ConfigError as exc:
            if problems is None:
                raise
            problems.append(f"{exc}; its settings are not used")
    return layer


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})", setting=str(path)) from exc
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES} bytes", setting=str(path))
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start} is not valid UTF-8)", setting=str(path)
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})", setting=str(path)) from None
    except RecursionError:
        raise ConfigError(
            f"{path}: not valid TOML (nested too deeply)", setting=str(path)
        ) from None


def _file_values(
    section: object, where: str, refused: list[str], problems: list[str] | None = None
) -> dict[str, tuple[object, str]]:
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: must be a table of settings", setting=where)
    layer: dict[str, tuple[object, str]] = {}
    for raw_key, value in section.items():
        key = raw_key.strip().lower().replace("-", "_")
        key = _ENV_ONLY_BY_VAR.get(key, key)  # `TRACKER_DO_API_URL = ...` is the same key
        if key in ENV_ONLY:
            refused.append(refusal(raw_key, where, ENV_ONLY[key]))
            continue  # not used: the value is never read, let alone checked or shown
        try:
            _known_key(key, raw_key, where)
        except ConfigError as exc:
            if problems is None:
                raise
            problems.append(f"{exc}; it is not used")
            continue
        layer[key] = (value, f"{_key_name(raw_key)} in {where}")
    return layer


def _known_key(key: str, raw_key: str, where: str) -> None:
    name = f"{_key_name(raw_key)} in {where}"
    quoted = f"{raw_key[:60]!r} in {where}"
    if any(word in key for word in _SECRET_WORDS) and key not in ENV_NAMES:
        raise ConfigError(
            f"{quoted}: secrets come only from the environment "
            f"(DIGITALOCEAN_TOKEN, DB_PASS, TRACKER_MYSQL_URL), never from a file",
            setting=name,
        )
    if key not in ENV_NAMES:
        raise ConfigError(f"{quoted}: unknown setting", setting=name)


def _key_name(raw_key: str) -> str:
    return raw_key if raw_key.isprintable() and len(raw_key) <= 60 else repr(raw_key[:60])


_ENV_ONLY_BY_VAR = {var.lower(): key for key, var in ENV_ONLY.items()}


def refusal(raw_key: str, where: str, variable: str) -> str:
    """The one line `doctor` shows for a file key that may only come from the environment."""
    shown = _key_name(raw_key)
    return (
        f"{shown} in {where} is refused and not used: where a secret is sent and whether TLS"
        f" protects it come only from the environment or a flag (set {variable} instead)"
    )


# --- validation -------------------------------------------------------------------------------


def _bad(origin: str, problem: str, value: object) -> ConfigError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ConfigError(f"{origin}: {problem}, got {shown}", setting=origin)


_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([smhdw]?)\s*$", re.I | re.A)
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
DURATION_FORMS = "90, 90s, 1.5m, 8m, 2h or 1d"


def parse_duration(
    value: object,
    origin: str,
    *,
    positive: bool = False,
    maximum: float = MAX_DURATION_S,
    error: type[TrackerError] = ConfigError,
    example: str = "480, 8m or 2h",
) -> float:
    """Seconds from a duration as every option and variable takes it (SPEC §5): a number of
    seconds (fractions welcome) or one with a unit, `90`, `90s`, `1.5m`, `8m`, `2h`, `1d`.

    `error` is the class raised (ConfigError for settings, UsageError for options), with one
    line naming `origin`; NaN, infinities, negatives, zero when `positive`, and more than
    `maximum` are refused."""

    def bad(problem: str) -> TrackerError:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        message = f"{origin}: {problem}, got {shown}"
        if error is ConfigError:
            return ConfigError(message, setting=origin)
        return error(message)

    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise bad(f"must be a duration like {example}")
    if isinstance(value, str):
        found = _DURATION.match(value)
        if found is None:
            if value.strip().startswith("-") and _DURATION.match(value.strip()[1:]):
                raise bad("must not be negative")
            raise bad(f"must be a duration like {example}")
        seconds = float(found.group(1)) * _UNIT_S[found.group(2).lower()]
        if math.isinf(seconds):  # digits beyond any float
            raise bad(f"must be at most {_span(maximum)}")
    else:
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond any float (a TOML file can hold one)
            raise bad(f"must be at most {_span(maximum)}") from None
    if not math.isfinite(seconds):
        raise bad(f"must be a duration like {example}")
    if seconds < 0:
        raise bad("must not be negative")
    if positive and seconds == 0:
        raise bad("must be more than 0")
    if seconds > maximum:
        raise bad(f"must be at most {_span(maximum)}")
    return seconds


def _span(seconds: float) -> str:
    for unit, size in (("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"


_EXAMPLES = {  # what the message of a bad duration offers, by setting
    "poll_interval": "10, 30s or 1.5m",
    "poll_initial": "5, 5s or 0.5m",
    "poll_switch_after": "120, 2m or 1h",
    "poll_long": "15, 15s or 1m",
    "max_wait": "480, 8m or 2h",
}


def _duration(value: object, origin: str, positive: bool, key: str = "") -> float:
    """A duration setting (`parse_duration`), at most seven days."""
    example = _EXAMPLES.get(key, "10, 10s or 1m")
    return parse_duration(value, origin, positive=positive, example=example)


def _text(value: object, origin: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(origin, "must be a non-empty string", value)
    if not value.isprintable() or not _encodable(value):
        raise _bad(origin, "must be printable text (no control characters, valid UTF-8)", value)
    return value.strip()


def _encodable(value: str) -> bool:
    """False for text holding undecodable bytes (surrogate escapes) that cannot be sent on."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
        out[key] = _scalar(key, *found)
    return out


def _scalar(key: str, value: object, origin: str) -> Any:
    if key in _DURATIONS:
        return _duration(value, origin, _DURATIONS[key], key)
    if key == "poll_policy":
        return _choice(value, origin, ("informed", "fixed", "stepped"))
    if key == "synchronous":
        return _choice(value, origin, ("FULL", "NORMAL"))
    if key in ("api_budget_per_minute", "api_budget_per_hour"):
        return _count(value, origin)
    return _branch(value, origin)


MAX_BUDGET = 10**7  # calls per window: far above any platform's limit


def _count(value: object, origin: str) -> int:
    """A whole number of calls, at least 1."""
    problem = f"must be a whole number of calls from 1 to {MAX_BUDGET}"
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _bad(origin, problem, value)
    try:
        found = int(str(value).strip())
    except ValueError:
        raise _bad(origin, problem, value) from None
    if not 1 <= found <= MAX_BUDGET:
        raise _bad(origin, problem, value)
    return found


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
        raise ConfigError(
            "DIGITALOCEAN_TOKEN: contains whitespace (value not shown)",
            setting="DIGITALOCEAN_TOKEN",
        )
    if not (token.isascii() and token.isprintable()):  # it goes into an HTTP header as it is
        raise ConfigError(
            "DIGITALOCEAN_TOKEN: contains characters that are not printable ASCII"
            " (value not shown)",
            setting="DIGITALOCEAN_TOKEN",
        )
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
        raise ConfigError(
            f"{origin}: must be a plain base URL (no credentials, query or #)", setting=origin
        )
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
        password=_password(secret),
        database=database,
        ssl=ssl,
        connect_timeout=_duration(*timeout, positive=True) if timeout else 10.0,
        ssl_ca=_ssl_ca(layers),
        **names,
    )


def _password(found: tuple[object, str] | None) -> str:
    password = str(found[0]) if found else ""
    if not _encodable(password) or "\x00" in password:
        where = found[1] if found else "DB_PASS"
        raise ConfigError(
            f"{where}: the password is not valid UTF-8 text (value not shown)", setting=where
        )
    return password


def _required_text(layers: _Layers, key: str, what: str) -> str:
    found = layers.get(key)
    if found is None:
        raise ConfigError(f"{what} is not set", setting=what.split("(")[-1].rstrip(")"))
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
