"""The one error tree of the tracker; `cli.py` maps each class to one exit code.

    TrackerError                 70  internal error (a bug)
    ├── UsageError               64  bad input: unknown flag, malformed SHA, a ref that is no commit
    ├── SourceUnavailableError   69  a deployment source cannot be reached
    ├── LogError                 74  the log cannot be read or written
    │   └── LeaseLostError       74  another watcher took the app's fleet lease over (fleet mode)
    ├── LockTimeoutError         75  the lock could not be taken in time
    └── ConfigError              78  the configuration is wrong or incomplete

Errors from the layer below (sqlite3, httpx, pymysql, git) are re-raised as one of these with
``raise ... from exc`` where they are first caught, and their messages never carry a secret.
"""

from __future__ import annotations


class TrackerError(Exception):
    """Base of every error the tracker raises on purpose."""

    exit_code = 70


class UsageError(TrackerError):
    """The caller asked for something malformed or impossible."""

    exit_code = 64


class SourceUnavailableError(TrackerError):
    """A deployment source (the API or the database) cannot be reached or refused us."""

    exit_code = 69


class LogError(TrackerError):
    """The event log cannot be read or written (corrupt, disk full, permission)."""

    exit_code = 74


class LeaseLostError(LogError):
    """Fleet mode: the app's watch lease is another watcher's now (`holder`, `fence`), so this
    watcher's appends are refused: it stops, appending nothing more (the watcher exits 0)."""

    def __init__(self, holder: str, fence: int) -> None:
        super().__init__(f"lease lost to {holder} (fence {fence})")
        self.holder, self.fence = holder, fence


class LockTimeoutError(TrackerError):
    """Another process held the log's lock for longer than we were willing to wait."""

    exit_code = 75


class StoppedError(TrackerError):
    """A watcher stopped by a signal (SIGTERM, SIGHUP, SIGINT), after saying so in the log."""

    exit_code = 130


class ConfigError(TrackerError):
    """The configuration is invalid or lacks something the command needs.

    `setting` names what to change (a variable, `key in file`, or a file), for the fix a monitor
    records when it refuses to start (`MonitorNotStarted`)."""

    exit_code = 78

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting

    @property
    def fix(self) -> str:
        if self.setting:
            return f"fix {self.setting}"
        return "fix the setting it names (see `tracker doctor`)"
