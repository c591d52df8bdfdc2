"""Small, safe calls into git: where the log lives, refs to SHAs, ancestry, clean environments.

Every ref is validated before it reaches git; git's own per-repository variables (`GIT_DIR`,
`GIT_INDEX_FILE`, ...) are removed from the environment of every child we start.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

from tracker.errors import UsageError

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
SHORT_SHA = re.compile(r"^[0-9a-fA-F]{7,40}$")
# What git accepts as a revision is broad; we refuse what could be an option or a shell trick.
_SAFE_REV = re.compile(r"^[A-Za-z0-9_./@{}~^:+-]{1,255}$")

# `git rev-parse --local-env-vars` on git 2.39, plus GIT_PREFIX which hooks also get.
GIT_LOCAL_ENV = (
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_OBJECT_DIRECTORY",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX",
    "GIT_INTERNAL_SUPER_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_COMMON_DIR",
)


def clean_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without git's per-repository variables."""
    source = os.environ if env is None else env
    return {
        k: v
        for k, v in source.items()
        if k not in GIT_LOCAL_ENV
        and not k.startswith("GIT_CONFIG_KEY_")
        and not k.startswith("GIT_CONFIG_VALUE_")
    }


def git(args: list[str], cwd: Path | str | None = None, timeout: float = 10.0) -> str | None:
    """Run git; its stdout stripped, or None when it fails."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def pusher(cwd: Path | str | None = None, *, git_dir: str | None = None) -> str:
    """Who is pushing, the same whichever way the push is recorded: git's user.email (or
    user.name) in the repository, else the login name."""
    where = ["--git-dir", git_dir] if git_dir else []
    for key in ("user.email", "user.name"):
        found = git([*where, "config", "--get", key], cwd="/" if git_dir else cwd)
        if found:
            return found
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, ImportError):
        return os.environ.get("USER", "")


def common_dir(cwd: Path | str = ".") -> Path | None:
    """The git common dir (shared by all worktrees) of the repository at `cwd`, or None."""
    out = git(["rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=cwd)
    return Path(out) if out else None


def toplevel(cwd: Path | str = ".") -> Path | None:
    out = git(["rev-parse", "--show-toplevel"], cwd=cwd)
    return Path(out) if out else None


def hooks_run_in(cwd: Path | str = ".") -> Path | None:
    """Where git runs hooks for the repository at `cwd` (githooks(5)): the top level of the
    working tree, or the git directory of a bare repository; None outside a repository."""
    found = toplevel(cwd)
    if found is not None:
        return found
    out = git(["rev-parse", "--is-bare-repository", "--absolute-git-dir"], cwd=cwd)
    bare, _, git_dir = (out or "").partition("\n")
    if bare == "true" and git_dir:
        return Path(git_dir)
    if bare == "false" and git_dir.endswith("/.git"):
        return Path(git_dir).parent  # somewhere inside the `.git` of a working tree
    return None


def log_path_from_env(value: str, cwd: Path | str = ".") -> Path:
    """The log a `TRACKER_DB` value names, by the one rule of every entry point (the hook, the
    confirmer, the CLI, `Tracker.open`; README "Where the log lives"): a leading `~/` is the home
    directory; a relative path is taken from where git runs hooks (the top level of the working
    tree, or a bare repository's git directory), so it names the same log from any directory of
    the repository, as the hook sees it; outside a repository, from the current directory."""
    if value == "~" or value.startswith("~/"):
        value = os.path.expanduser(value)
    path = Path(value)
    if path.is_absolute():
        return path
    return (hooks_run_in(cwd) or Path(cwd).absolute()) / path


def default_db_path(cwd: Path | str = ".") -> Path | None:
    """`<git common dir>/tracker/events.db`, or None outside a repository."""
    found = common_dir(cwd)
    return found / "tracker" / "events.db" if found else None


def shown(text: str, limit: int = 60) -> str:
    """`text` quoted for an error message, cut short: a message is one readable line."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"


def check_rev(ref: str) -> str:
    """Refuse a revision that could be read as an option or carries shell or control characters."""
    if not ref or ref.startswith("-") or not _SAFE_REV.match(ref) or ".." in ref:
        raise UsageError(f"not a valid revision: {shown(ref)}")
    return ref


_REMOTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_BAD_BRANCH = re.compile(r"[\s\x00-\x1f\x7f~^:?*\[\\$`;|&<>()'\"]|\.\.|@\{|//|^-|^/|/$|\.lock$|\.$")


def check_branch(name: str) -> str:
    """A branch name git would accept, without shell metacharacters."""
    if not name or len(name) > 255 or _BAD_BRANCH.search(name):
        raise UsageError(f"not a valid branch name: {shown(name)}")
    return name


def check_remote(name: str) -> str:
    """A remote name (empty: none)."""
    if name and not _REMOTE_NAME.match(name):
        raise UsageError(f"not a valid remote name: {shown(name)}")
    return name


def resolve_commit(ref: str, cwd: Path | str = ".") -> str | None:
    """The full SHA of the one commit `ref` names in the repository at `cwd`, or None."""
    check_rev(ref)
    return git(["rev-parse", "-q", "--verify", "--end-of-options", f"{ref}^{{commit}}"], cwd=cwd)


def is_ancestor(ancestor: str, descendant: str, cwd: Path | str = ".") -> bool | None:
    """Whether `ancestor` is contained in `descendant`; None when git cannot tell."""
    if not (FULL_SHA.match(ancestor) and FULL_SHA.match(descendant)):
        return None
    try:
        done = subprocess.run(
            ["git", "merge-base", "--is-ancestor", ancestor, descendant],
            cwd=cwd,
            env=clean_env(),
            capture_output=True,
            timeout=10,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {0: True, 1: False}.get(done.returncode)


def fetch(remote: str, cwd: Path | str = ".", timeout: float = 30.0) -> bool:
    """`git fetch` a remote's branches quietly (to learn commits pushed from other clones)."""
    if not _REMOTE_NAME.match(remote):
        return False
    return (
        git(["fetch", "--quiet", "--no-tags", "--end-of-options", remote], cwd, timeout) is not None
    )


def strip_credentials(url: str) -> str:
    """A remote URL without user, password, query or fragment (`https://tok@host/x?t=1` →
    `https://host/x`): string operations that `hooks/pre-push` repeats exactly in sh."""
    if "://" in url:
        scheme, rest = url.split("://", 1)
        authority = rest.split("/", 1)[0]  # everything up to the path, '?' and '#' included
        if "@" in authority:
            rest = authority.rsplit("@", 1)[1] + rest[len(authority) :]
        return f"{scheme}://{rest.split('?', 1)[0].split('#', 1)[0]}"
    if "@" in url.split(":", 1)[0] and ":" in url:
        # scp-like `user@host:path`: the user is an account name, not a secret; keep the host
        return url.split("@", 1)[1]
    return url


def repo_key(url: str) -> str:
    """One spelling of the repository a remote URL names, whatever the transport
    (`git@github.com:org/app.git`, `https://tok@github.com/org/app`, `ssh://git@github.com:22/org/app`
    → `github.com/org/app`; a local path → its absolute, normalised form): what tells whether two
    clones push to the same repository."""
    text = strip_credentials(url.strip())
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme.lower() == "file":
            return os.path.normpath(rest)
        host, _, path = rest.partition("/")
        host = host.rsplit(":", 1)[0] if host.rsplit(":", 1)[-1].isdigit() else host
    elif ":" in text and not text.startswith(("/", ".")) and "/" not in text.split(":", 1)[0]:
        host, path = text.split(":", 1)  # scp-like host:path
    else:
        return os.path.normpath(os.path.abspath(text)) if text else ""
    path = path.strip("/")
    path = path[: -len(".git")] if path.endswith(".git") else path
    return f"{host.lower()}/{path.strip('/')}"


def remote_keys(cwd: Path | str = ".") -> frozenset[str]:
    """The `repo_key` of every remote URL (fetch and push) the repository at `cwd` has."""
    found = git(["config", "--get-regexp", r"^remote\..*\.(push)?url$"], cwd)
    if not found:
        return frozenset()
    return frozenset(
        repo_key(line.split(None, 1)[1]) for line in found.splitlines() if len(line.split()) > 1
    )
