"""Settings: precedence, validation of every value, and secrets kept out of sight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracker.config import ENV_NAMES, Settings, is_loopback, load_settings
from tracker.errors import ConfigError

SECRET_PW = "pw-Zq8!s3cr3t"
SECRET_TOKEN = "dop_v1_5ecret0123456789abcdef"
MYSQL_ENV = {"DB_HOST": "db.example.com", "DB_USER": "deploy", "DB_NAME": "app"}
DO_ENV = {"DIGITALOCEAN_TOKEN": SECRET_TOKEN, "TRACKER_DO_APP_ID": "abc-123"}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_with_nothing_configured():
    settings = load_settings(None, env={})
    assert settings == Settings()
    assert (settings.poll_policy, settings.poll_initial, settings.poll_long) == ("informed", 5, 15)
    assert (settings.poll_lag_budget, settings.poll_max_interval) == (0.5, 30)
    assert (settings.max_wait, settings.synchronous, settings.branch) == (480, "FULL", "main")
    assert settings.sources() == []
    assert settings.describe()["origins"]["max_wait"] == "default"


@pytest.mark.parametrize(
    ("flag", "env", "dotfile", "pyproject", "expected", "origin"),
    [
        (None, None, None, None, 10.0, "default"),
        (None, None, None, "4", 4.0, "poll_interval in [tool.tracker] in pyproject.toml"),
        (None, None, "3", "4", 3.0, "poll_interval in .tracker.toml"),
        (None, "2", "3", "4", 2.0, "TRACKER_POLL_INTERVAL"),
        (1.5, "2", "3", "4", 1.5, "option poll_interval"),
        (1.5, None, None, None, 1.5, "option poll_interval"),
        (None, "2", None, "4", 2.0, "TRACKER_POLL_INTERVAL"),
    ],
)
def test_precedence_flag_env_file_default(
    tmp_path, flag, env, dotfile, pyproject, expected, origin
):
    if pyproject is not None:
        write(
            tmp_path / "pyproject.toml",
            f"[project]\nname='x'\n[tool.tracker]\npoll_interval = {pyproject}\n",
        )
    if dotfile is not None:
        write(tmp_path / ".tracker.toml", f"poll_interval = {dotfile}\n")
    environ = {} if env is None else {"TRACKER_POLL_INTERVAL": env}
    settings = load_settings(tmp_path, env=environ, overrides={"poll_interval": flag})
    assert settings.poll_interval == expected
    assert settings.describe()["origins"]["poll_interval"] == origin


def test_file_sets_every_kind_of_non_secret_setting(tmp_path):
    write(
        tmp_path / ".tracker.toml",
        'branch = "release"\npoll-policy = "FIXED"\npoll_interval = 0.25\nsynchronous = "normal"\n'
        'mysql_user = "root"\nmysql_database = "test"\nmysql_table = "deploys"\n',
    )
    env = {"DB_PASS": SECRET_PW, "DB_HOST": "127.0.0.1", "DB_PORT": "3307"}
    settings = load_settings(tmp_path, env=env)
    assert (settings.branch, settings.poll_policy, settings.poll_interval) == (
        "release",
        "fixed",
        0.25,
    )
    assert settings.synchronous == "NORMAL"
    assert settings.mysql is not None
    assert (settings.mysql.table, settings.mysql.port, settings.mysql.password) == (
        "deploys",
        3307,
        SECRET_PW,
    )


def test_file_is_ignored_without_a_repo_root(tmp_path, monkeypatch):
    write(tmp_path / ".tracker.toml", "poll_interval = 3\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(None, env={}).poll_interval == 10.0


def test_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("TRACKER_MAX_WAIT", "12.5")
    assert load_settings(None).max_wait == 12.5


def test_empty_environment_values_count_as_unset():
    assert load_settings(None, env={"TRACKER_POLL_INTERVAL": "", "DB_HOST": ""}).poll_interval == 10


@pytest.mark.parametrize(
    ("var", "value", "fragment"),
    [
        ("TRACKER_POLL_INTERVAL", "abc", "must be a duration like 10, 30s or 1.5m"),
        ("TRACKER_POLL_INTERVAL", "-1", "must not be negative"),
        ("TRACKER_POLL_INTERVAL", "0", "more than 0"),
        ("TRACKER_POLL_INTERVAL", "0s", "more than 0"),
        ("TRACKER_POLL_INTERVAL", "nan", "must be a duration"),
        ("TRACKER_POLL_INTERVAL", "inf", "must be a duration"),
        ("TRACKER_POLL_INTERVAL", "1e400", "must be a duration"),
        ("TRACKER_POLL_INTERVAL", "9" * 400, "at most 7 days"),
        ("TRACKER_POLL_INTERVAL", "5x", "must be a duration"),
        ("TRACKER_POLL_INTERVAL", "5 m s", "must be a duration"),
        ("TRACKER_POLL_INTERVAL", "\u0665", "must be a duration"),  # an Arabic-Indic 5
        ("TRACKER_POLL_INITIAL", "604801", "at most 7 days"),
        ("TRACKER_POLL_INITIAL", "8d", "at most 7 days"),
        ("TRACKER_POLL_LONG", "-0.5", "must not be negative"),
        ("TRACKER_POLL_SWITCH_AFTER", "-0.001", "must not be negative"),
        ("TRACKER_MAX_WAIT", "NaN", "must be a duration like 480, 8m or 2h"),
        ("TRACKER_MAX_WAIT", "abc", "must be a duration like 480, 8m or 2h"),
        ("TRACKER_MAX_WAIT", "-8m", "must not be negative"),
        ("TRACKER_HTTP_TIMEOUT", "0", "more than 0"),
        ("TRACKER_LOCK_TIMEOUT", "-inf", "must be a duration"),
        ("TRACKER_POLL_POLICY", "sometimes", "one of informed, fixed, stepped"),
        ("TRACKER_SYNCHRONOUS", "OFF", "one of FULL, NORMAL"),
        ("TRACKER_BRANCH", "bad..name", "branch name"),
        ("TRACKER_BRANCH", "-rf", "branch name"),
        ("TRACKER_BRANCH", "a b", "branch name"),
    ],
)
def test_bad_scalar_values_name_the_variable_and_value(var, value, fragment):
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={var: value})
    message = str(info.value)
    assert message.startswith(f"{var}: ") and fragment in message and repr(value)[:50] in message
    assert "\n" not in message
    assert info.value.exit_code == 78


@pytest.mark.parametrize(
    ("var", "value", "fragment"),
    [
        ("TRACKER_MYSQL_TABLE", "deployments; DROP TABLE users", "plain identifier"),
        ("TRACKER_MYSQL_TABLE", "`deployments`", "plain identifier"),
        ("TRACKER_MYSQL_TABLE", "a" * 65, "plain identifier"),
        ("TRACKER_MYSQL_SHA_COLUMN", "commitSha OR 1=1", "plain identifier"),
        ("TRACKER_MYSQL_STATUS_COLUMN", "status, (SELECT 1)", "plain identifier"),
        ("TRACKER_MYSQL_TIME_COLUMN", "1createdAt", "plain identifier"),
        ("TRACKER_MYSQL_TIME_COLUMN", "créé", "plain identifier"),
        ("DB_PORT", "0", "port number"),
        ("DB_PORT", "70000", "port number"),
        ("DB_PORT", "3306a", "port number"),
        ("TRACKER_MYSQL_SSL", "maybe", "required, preferred or disabled"),
        ("TRACKER_MYSQL_CONNECT_TIMEOUT", "0", "more than 0"),
        ("TRACKER_MYSQL_SSL_CA", "/nonexistent/ca.pem", "CA certificate"),
    ],
)
def test_bad_mysql_values_name_the_variable(var, value, fragment):
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={**MYSQL_ENV, "DB_PASS": SECRET_PW, var: value})
    message = str(info.value)
    assert message.startswith(f"{var}: ") and fragment in message
    assert SECRET_PW not in message


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"TRACKER_DO_API_URL": "ftp://api.example.com"}, "http(s) URL"),
        ({"TRACKER_DO_API_URL": "http://api.example.com"}, "must use https"),
        ({"TRACKER_DO_API_URL": "https://user:pw@api.example.com"}, "plain base URL"),
        ({"TRACKER_DO_API_URL": "https://api.example.com:99999"}, "valid URL"),
        ({"TRACKER_DO_APP_ID": "abc/../../v2/account"}, "app id"),
    ],
)
def test_bad_digitalocean_values_name_the_variable(env, fragment):
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={**DO_ENV, **env})
    message = str(info.value)
    assert message.startswith(tuple(env)) and fragment in message
    assert SECRET_TOKEN not in message


def test_token_with_whitespace_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={**DO_ENV, "DIGITALOCEAN_TOKEN": SECRET_TOKEN + "\n"})
    assert "DIGITALOCEAN_TOKEN" in str(info.value) and SECRET_TOKEN not in str(info.value)


def test_plain_http_is_allowed_to_loopback_only():
    settings = load_settings(None, env={**DO_ENV, "TRACKER_DO_API_URL": "http://127.0.0.1:8123/"})
    assert settings.do is not None and settings.do.api_url == "http://127.0.0.1:8123"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        (f"mysql://u:{SECRET_PW}@db.example.com:99999/app", "port"),
        (f"mysql://u:{SECRET_PW}@db.example.com:port/app", "port"),
        (f"postgres://u:{SECRET_PW}@db.example.com/app", "mysql://"),
        (f"mysql://u:{SECRET_PW}@/app", "no host"),
        (f"mysql://u:{SECRET_PW}@db.example.com", "no database"),
        (f"mysql://u:{SECRET_PW}@db.example.com/app?sslx=1", "unknown query parameter"),
        (f"mysql://u:{SECRET_PW}@db.example.com/app?ssl=sometimes", "required, preferred"),
        (f"mysql://{SECRET_PW}@db.example.com/app?table=x", "unknown query parameter"),
    ],
)
def test_bad_mysql_url_names_the_part_and_hides_the_password(url, fragment):
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"TRACKER_MYSQL_URL": url})
    message = str(info.value)
    assert message.startswith("TRACKER_MYSQL_URL") and fragment in message
    assert SECRET_PW not in message and url not in message


def test_mysql_url_is_parsed_and_decoded():
    url = "mysql://deploy%40ci:p%40ss%2Fw0rd@db.example.com:3307/app_db?ssl=required"
    my = load_settings(None, env={"TRACKER_MYSQL_URL": url}).mysql
    assert my is not None
    assert (my.user, my.password, my.host, my.port, my.database) == (
        "deploy@ci",
        "p@ss/w0rd",
        "db.example.com",
        3307,
        "app_db",
    )
    assert my.ssl == "required"


def test_mysql_url_wins_over_db_variables_field_by_field():
    env = {**MYSQL_ENV, "DB_PORT": "3310", "DB_PASS": SECRET_PW}
    env["TRACKER_MYSQL_URL"] = "mysql://other@127.0.0.1/otherdb"
    my = load_settings(None, env=env).mysql
    assert my is not None
    assert (my.host, my.user, my.database) == ("127.0.0.1", "other", "otherdb")
    assert (my.port, my.password) == (3310, SECRET_PW)  # the URL says nothing about them


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"DB_HOST": "db.example.com", "DB_NAME": "app"}, "MySQL user"),
        ({"DB_HOST": "db.example.com", "DB_USER": "deploy"}, "MySQL database"),
    ],
)
def test_incomplete_mysql_settings_say_what_is_missing(env, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_settings(None, env=env)


@pytest.mark.parametrize(
    ("host", "ssl", "expected", "noted"),
    [
        ("127.0.0.1", None, "preferred", False),
        ("localhost", None, "preferred", False),
        ("::1", None, "preferred", False),
        ("127.0.0.2", None, "preferred", False),
        ("db.example.com", None, "required", False),
        ("10.0.0.5", None, "required", False),
        ("db.example.com", "disabled", "disabled", True),
        ("db.example.com", "false", "disabled", True),
        ("db.example.com", "preferred", "preferred", True),
        ("127.0.0.1", "required", "required", False),
        ("127.0.0.1", "off", "disabled", False),
    ],
)
def test_tls_required_off_loopback_unless_explicitly_turned_off(host, ssl, expected, noted):
    env = {**MYSQL_ENV, "DB_HOST": host}
    if ssl is not None:
        env["TRACKER_MYSQL_SSL"] = ssl
    settings = load_settings(None, env=env)
    assert settings.mysql is not None and settings.mysql.ssl == expected
    assert any("TLS" in note for note in settings.notes) == noted


def test_url_ssl_parameter_turns_tls_off():
    url = "mysql://u@db.example.com/app?ssl=disabled"
    settings = load_settings(None, env={"TRACKER_MYSQL_URL": url})
    assert settings.mysql is not None and settings.mysql.ssl == "disabled"
    assert settings.notes == (
        "MySQL TLS to db.example.com is disabled by TRACKER_MYSQL_URL: "
        "the password may travel in clear",
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("db.local", False),
        ("localhost.evil.com", False),
        ("::2", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("env", "sources", "note"),
    [
        ({}, [], None),
        (MYSQL_ENV, ["mysql"], None),
        (DO_ENV, ["digitalocean"], None),
        ({**DO_ENV, **MYSQL_ENV}, ["mysql", "digitalocean"], None),
        ({"DIGITALOCEAN_TOKEN": SECRET_TOKEN}, [], "TRACKER_DO_APP_ID is not set"),
        ({"TRACKER_DO_APP_ID": "abc"}, [], "DIGITALOCEAN_TOKEN is not set"),
        ({"DB_USER": "deploy", "DB_NAME": "app"}, [], "DB_HOST"),
    ],
)
def test_sources_and_notes_on_half_configured_ones(env, sources, note):
    settings = load_settings(None, env=env)
    assert settings.sources() == sources
    if note is None:
        assert settings.notes == ()
    else:
        assert any(note in n for n in settings.notes)


def test_secrets_never_appear_in_repr_or_describe():
    env = {**DO_ENV, "TRACKER_MYSQL_URL": f"mysql://deploy:{SECRET_PW}@db.example.com/app"}
    settings = load_settings(None, env=env)
    assert settings.do is not None and settings.do.token == SECRET_TOKEN
    assert settings.mysql is not None and settings.mysql.password == SECRET_PW
    for text in (
        repr(settings),
        str(settings),
        repr(settings.do),
        repr(settings.mysql),
        json.dumps(settings.describe()),
    ):
        assert SECRET_TOKEN not in text and SECRET_PW not in text
    described = settings.describe()
    assert described["digitalocean"]["token"] == "set"
    assert described["mysql"]["password"] == "set"
    assert described["mysql"]["host"] == "db.example.com"
    assert described["sources"] == ["mysql", "digitalocean"]


def test_describe_says_unset_for_an_empty_password():
    described = load_settings(None, env=MYSQL_ENV).describe()
    assert described["mysql"]["password"] == "unset"
    assert described["digitalocean"] == {"configured": False}


@pytest.mark.parametrize(
    ("filename", "text", "key"),
    [
        (".tracker.toml", f'password = "{SECRET_PW}"\n', "password"),
        (".tracker.toml", f'DB_PASS = "{SECRET_PW}"\n', "DB_PASS"),
        (".tracker.toml", f'token = "{SECRET_PW}"\n', "token"),
        (
            "pyproject.toml",
            f'[tool.tracker]\nDIGITALOCEAN_TOKEN = "{SECRET_PW}"\n',
            "DIGITALOCEAN_TOKEN",
        ),
        ("pyproject.toml", f'[tool.tracker]\nmysql-password = "{SECRET_PW}"\n', "mysql-password"),
    ],
)
def test_a_secret_in_a_file_is_refused(tmp_path, filename, text, key):
    write(tmp_path / filename, text)
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, env={})
    message = str(info.value)
    assert key in message and "only from the environment" in message and filename in message
    assert SECRET_PW not in message


@pytest.mark.parametrize(
    ("filename", "text", "fragment"),
    [
        (".tracker.toml", "pol_interval = 3\n", "'pol_interval' in .tracker.toml: unknown setting"),
        (".tracker.toml", "poll_interval = [\n", "not valid TOML"),
        (".tracker.toml", "poll_interval = -3\n", "poll_interval in .tracker.toml: must not be"),
        (".tracker.toml", "poll_interval = true\n", "poll_interval in .tracker.toml: must be"),
        (
            ".tracker.toml",
            'mysql_table = "x y"\nmysql_user = "u"\nmysql_database = "d"\n',
            "mysql_table in .tracker.toml: must be a plain identifier",
        ),
        ("pyproject.toml", "[tool]\ntracker = 3\n", "must be a table"),
        ("pyproject.toml", '[tool.tracker]\npoll_policy = "always"\n', "informed, fixed, stepped"),
    ],
)
def test_bad_file_values_name_the_key_and_file(tmp_path, filename, text, fragment):
    write(tmp_path / filename, text)
    with pytest.raises(ConfigError, match=None) as info:
        load_settings(tmp_path, env={"DB_HOST": "h"})
    assert fragment in str(info.value)


def test_pyproject_without_a_tracker_table_is_fine(tmp_path):
    write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n[tool.ruff]\nline-length = 100\n")
    assert load_settings(tmp_path, env={}) == Settings()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"max_wait": 0}, 0.0),
        ({"max_wait": "0.5"}, 0.5),
        ({"max_wait": None}, 480.0),
    ],
)
def test_overrides_accept_numbers_and_strings_and_skip_none(overrides, expected):
    assert load_settings(None, env={}, overrides=overrides).max_wait == expected


def test_unknown_or_secret_override_is_refused():
    with pytest.raises(ConfigError, match="unknown setting 'poll_intervl'"):
        load_settings(None, env={}, overrides={"poll_intervl": 3})
    with pytest.raises(ConfigError, match="unknown setting 'do_token'"):
        load_settings(None, env={}, overrides={"do_token": SECRET_TOKEN})


def test_fractions_are_accepted_everywhere():
    env = {
        "TRACKER_POLL_INITIAL": "0.01",
        "TRACKER_POLL_SWITCH_AFTER": "0.05",
        "TRACKER_POLL_LONG": "0.02",
        "TRACKER_MAX_WAIT": "1.5",
        "TRACKER_LOCK_TIMEOUT": "0",
    }
    settings = load_settings(None, env=env)
    assert (settings.poll_initial, settings.poll_switch_after, settings.poll_long) == (
        0.01,
        0.05,
        0.02,
    )
    assert (settings.max_wait, settings.lock_timeout) == (1.5, 0.0)


def test_branch_loses_refs_heads_prefix():
    assert (
        load_settings(None, env={"TRACKER_BRANCH": "refs/heads/release/v2"}).branch == "release/v2"
    )


ENV_ONLY_CASES = [
    ("do_api_url", '"http://127.0.0.1:9/"', "TRACKER_DO_API_URL"),
    ("do-api-url", '"https://evil.example"', "TRACKER_DO_API_URL"),
    ("TRACKER_DO_API_URL", '"https://evil.example"', "TRACKER_DO_API_URL"),
    ("mysql_host", '"evil.example"', "DB_HOST"),
    ("DB_HOST", '"evil.example"', "DB_HOST"),
    ("mysql_port", "3307", "DB_PORT"),
    ("mysql_ssl", '"disabled"', "TRACKER_MYSQL_SSL"),
    ("mysql_ssl", "false", "TRACKER_MYSQL_SSL"),
    ("mysql_ssl_ca", '"/etc/hostname"', "TRACKER_MYSQL_SSL_CA"),
    ("mysql_url", f'"mysql://u:{SECRET_PW}@evil.example/d?ssl=disabled"', "TRACKER_MYSQL_URL"),
    ("log_url", '"mysql://u@evil.example/log"', "TRACKER_LOG_URL"),
]


@pytest.mark.parametrize("where", [".tracker.toml", "pyproject.toml"])
@pytest.mark.parametrize(("key", "value", "variable"), ENV_ONLY_CASES)
def test_a_file_that_says_where_a_secret_goes_is_refused_not_used(
    tmp_path, where, key, value, variable
):
    """SPEC §6: the key is not used, named for doctor (never its value), and nothing stops."""
    body = f'{key} = {value}\nmysql_user = "deploy"\nmysql_database = "app"\n'
    write(tmp_path / where, f"[tool.tracker]\n{body}" if where == "pyproject.toml" else body)
    env = {**DO_ENV, "DB_HOST": "db.example.com", "DB_PASS": SECRET_PW}
    settings = load_settings(tmp_path, env=env)
    assert settings.do is not None and settings.do.api_url == "https://api.digitalocean.com"
    assert settings.mysql is not None
    assert (settings.mysql.host, settings.mysql.port) == ("db.example.com", 3306)
    assert (settings.mysql.ssl, settings.mysql.ssl_ca) == ("required", None)
    (line,) = settings.refused
    assert key in line and where in line and variable in line and "not used" in line
    assert SECRET_PW not in line and "evil" not in line and "9/" not in line
    assert settings.describe()["refused"] == [line]


def test_a_refused_file_key_never_configures_a_source_on_its_own(tmp_path):
    write(
        tmp_path / ".tracker.toml",
        'mysql_host = "127.0.0.1"\nmysql_port = 3307\nmysql_user = "root"\n'
        'mysql_database = "test"\nmysql_ssl = "disabled"\n',
    )
    settings = load_settings(tmp_path, env={"DB_PASS": SECRET_PW})
    assert settings.mysql is None and settings.sources() == []
    assert [line.split()[0] for line in settings.refused] == [
        "mysql_host",
        "mysql_port",
        "mysql_ssl",
    ]


def test_the_environment_still_sets_what_a_file_may_not(tmp_path):
    write(tmp_path / ".tracker.toml", 'do_api_url = "https://evil.example"\nmysql_port = 1\n')
    env = {
        **DO_ENV,
        **MYSQL_ENV,
        "TRACKER_DO_API_URL": "http://127.0.0.1:8080",
        "DB_PORT": "3307",
        "TRACKER_MYSQL_SSL": "disabled",
    }
    settings = load_settings(tmp_path, env=env)
    assert settings.do is not None and settings.do.api_url == "http://127.0.0.1:8080"
    assert settings.mysql is not None
    assert (settings.mysql.port, settings.mysql.ssl) == (3307, "disabled")
    assert len(settings.refused) == 2  # still named: the file is wrong whatever else is set


def test_options_may_set_where_a_secret_goes():
    settings = load_settings(None, env=DO_ENV, overrides={"do_api_url": "http://127.0.0.1:1"})
    assert settings.do is not None and settings.do.api_url == "http://127.0.0.1:1"
    assert settings.refused == ()


# -- one duration parser for every option and variable (SPEC §5) ---------------------------------

DURATION_VARS = [
    "TRACKER_POLL_INTERVAL",
    "TRACKER_POLL_INITIAL",
    "TRACKER_POLL_SWITCH_AFTER",
    "TRACKER_POLL_LONG",
    "TRACKER_MAX_WAIT",
    "TRACKER_HTTP_TIMEOUT",
    "TRACKER_LOCK_TIMEOUT",
]
FORMS = [("90", 90.0), ("90s", 90.0), ("1.5m", 90.0), ("8m", 480.0), ("2h", 7200.0),
         ("1d", 86400.0), (" 10 S ", 10.0), (".5m", 30.0), ("0.25", 0.25),
         ("1w", 604800.0)]  # fmt: skip


@pytest.mark.parametrize("var", DURATION_VARS)
@pytest.mark.parametrize(("text", "seconds"), FORMS)
def test_every_duration_variable_takes_every_form(var, text, seconds):
    key = {v: k for k, v in ENV_NAMES.items()}[var]
    assert getattr(load_settings(None, env={var: text}), key) == seconds


@pytest.mark.parametrize(("text", "seconds"), FORMS)
def test_the_mysql_connect_timeout_takes_every_form(text, seconds):
    env = {**MYSQL_ENV, "TRACKER_MYSQL_CONNECT_TIMEOUT": text}
    mysql = load_settings(None, env=env).mysql
    assert mysql is not None and mysql.connect_timeout == seconds


def test_a_file_may_give_a_duration_as_text_or_a_number(tmp_path):
    write(tmp_path / ".tracker.toml", 'max_wait = "8m"\npoll_interval = 2.5\npoll_long = 20\n')
    settings = load_settings(tmp_path, env={})
    assert (settings.max_wait, settings.poll_interval, settings.poll_long) == (480.0, 2.5, 20.0)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("max_wait = 1e400\n", "must be a duration"), ("max_wait = nan\n", "must be a duration"),
     (f"max_wait = {10**400}\n", "at most 7 days"), ("max_wait = -1\n", "must not be negative"),
     ("lock_timeout = true\n", "must be a duration"), ('max_wait = "8 minutes"\n', "like 480")],
)  # fmt: skip
def test_bad_durations_in_a_file_name_the_key(tmp_path, text, fragment):
    write(tmp_path / ".tracker.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, env={})
    assert "in .tracker.toml: " in str(info.value) and fragment in str(info.value)
    assert info.value.fix.startswith("fix ") and ".tracker.toml" in info.value.fix


@pytest.mark.parametrize(
    ("value", "seconds"), [("5m", 300.0), ("0", 0.0), ("90", 90.0), ("1.5h", 5400.0)]
)
def test_parse_duration_for_options_raises_usage_errors(value, seconds):
    from tracker.config import parse_duration
    from tracker.errors import UsageError

    assert parse_duration(value, "--timeout", error=UsageError) == seconds
    with pytest.raises(UsageError, match=r"^--timeout: must not be negative"):
        parse_duration("-" + value, "--timeout", error=UsageError)


def test_a_bad_setting_names_what_to_fix():
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"TRACKER_MAX_WAIT": "abc"})
    assert str(info.value) == "TRACKER_MAX_WAIT: must be a duration like 480, 8m or 2h, got 'abc'"
    assert info.value.fix == "fix TRACKER_MAX_WAIT"


@pytest.mark.parametrize("token", ["tökén", "dop_v1_\u200b", "a\x07b", "\udcff\udcfe"])
def test_a_token_that_is_not_printable_ascii_is_refused_without_echoing_it(token):
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={**DO_ENV, "DIGITALOCEAN_TOKEN": token})
    assert "not printable ASCII (value not shown)" in str(info.value)
    assert token not in str(info.value) and info.value.fix == "fix DIGITALOCEAN_TOKEN"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [({"DB_USER": "de\x00ploy"}, "DB_USER: must be printable"),
     ({"DB_NAME": "a\udcffb"}, "DB_NAME: must be printable"),
     ({"DB_PASS": "p\udcffw"}, "DB_PASS: the password is not valid UTF-8"),
     ({"DB_PORT": "9" * 5000}, "DB_PORT: must be a port"),
     ({"DB_PORT": "-1"}, "DB_PORT: must be a port")],
)  # fmt: skip
def test_mysql_values_that_cannot_be_sent_are_refused(env, fragment):
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={**MYSQL_ENV, **env})
    assert str(info.value).startswith(fragment) and "\n" not in str(info.value)


# -- what reads need, apart (SPEC §4) -------------------------------------------------------------


MONITOR_ONLY = [
    {"TRACKER_MAX_WAIT": "abc"},
    {"TRACKER_MAX_WAIT": "8 minutes"},
    {"TRACKER_POLL_INTERVAL": "-1"},
    {"TRACKER_POLL_POLICY": "sometimes"},
    {"TRACKER_HTTP_TIMEOUT": "0"},
    {**DO_ENV, "TRACKER_DO_API_URL": "http://example.invalid"},
    {**DO_ENV, "DIGITALOCEAN_TOKEN": "tökén"},
    {"TRACKER_MYSQL_URL": "postgres://u:p@h/d"},
    {**MYSQL_ENV, "DB_PORT": "70000"},
    {**MYSQL_ENV, "TRACKER_MYSQL_TABLE": "x; DROP TABLE y"},
]


@pytest.mark.parametrize("env", MONITOR_ONLY)
def test_read_settings_ignore_what_only_the_monitor_uses(env):
    from tracker.config import ReadSettings, load_read_settings

    with pytest.raises(ConfigError):
        load_settings(None, env=env)
    assert load_read_settings(None, env=env) == ReadSettings()


def test_read_settings_are_validated_from_the_environment():
    from tracker.config import load_read_settings

    env = {"TRACKER_LOCK_TIMEOUT": "1.5m", "TRACKER_SYNCHRONOUS": "normal", "TRACKER_BRANCH": "x"}
    got = load_read_settings(None, env=env)
    assert (got.lock_timeout, got.synchronous, got.branch) == (90.0, "NORMAL", "x")
    assert got.warnings == ()
    with pytest.raises(ConfigError, match=r"^TRACKER_LOCK_TIMEOUT: must not be negative"):
        load_read_settings(None, env={"TRACKER_LOCK_TIMEOUT": "-1"})


@pytest.mark.parametrize(
    ("filename", "data", "fragment"),
    [(".tracker.toml", b"\xff\xfe", "not UTF-8"),
     (".tracker.toml", b"lock_timeout = [", "not valid TOML"),
     (".tracker.toml", b"a = " + b"[" * 100_000 + b"]" * 100_000, "not valid TOML"),
     (".tracker.toml", b'branch = "a\\u0000b"', "branch in .tracker.toml: must be printable"),
     (".tracker.toml", b"x" * 1_000_001, "larger than"),
     (".tracker.toml", b"lock_timeout = 1e400", "lock_timeout in .tracker.toml"),
     (".tracker.toml", b"pol_interval = 3", "unknown setting"),
     ("pyproject.toml", b"[tool.tracker]\n\xc3\x28 = 1", "not UTF-8"),
     ("pyproject.toml", b"[tool]\ntracker = 3", "must be a table")],
)  # fmt: skip
def test_a_broken_settings_file_is_a_warning_for_reads(tmp_path, filename, data, fragment):
    from tracker.config import load_read_settings

    (tmp_path / filename).write_bytes(data)
    (tmp_path / "pyproject.toml").exists() or write(tmp_path / "pyproject.toml", "")
    with pytest.raises(ConfigError, match=None) as info:
        load_settings(tmp_path, env={})
    assert fragment in str(info.value)  # the monitor refuses it
    got = load_read_settings(tmp_path, env={"TRACKER_SYNCHRONOUS": "NORMAL"})
    assert (got.branch, got.lock_timeout, got.synchronous) == ("main", 10.0, "NORMAL")
    assert len(got.warnings) == 1 and fragment in got.warnings[0], got.warnings
    assert "\n" not in got.warnings[0] and len(got.warnings[0]) < 400


def test_a_broken_file_leaves_the_other_file_in_use(tmp_path):
    from tracker.config import load_read_settings

    (tmp_path / ".tracker.toml").write_bytes(b"\xff")
    write(tmp_path / "pyproject.toml", '[tool.tracker]\nbranch = "release"\nlock_timeout = "2m"\n')
    got = load_read_settings(tmp_path, env={})
    assert (got.branch, got.lock_timeout, len(got.warnings)) == ("release", 120.0, 1)


@pytest.mark.parametrize(
    ("env", "names"),
    [({}, []), (DO_ENV, ["digitalocean"]),
     ({**DO_ENV, "TRACKER_MAX_WAIT": "abc"}, ["digitalocean"]),
     ({"DIGITALOCEAN_TOKEN": "tökén", "TRACKER_DO_APP_ID": "a"}, ["digitalocean"]),
     ({"DIGITALOCEAN_TOKEN": "t"}, []), ({"TRACKER_MYSQL_URL": "garbage"}, ["mysql"]),
     ({**MYSQL_ENV, **DO_ENV}, ["mysql", "digitalocean"])],
)  # fmt: skip
def test_source_names_say_what_is_configured_valid_or_not(env, names):
    from tracker.config import source_names

    assert source_names(None, env=env) == names
