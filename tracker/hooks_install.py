"""Wire the push hook into a repository: plain hooks dir, husky, or the pre-commit framework.

Plain: our script becomes `$(git rev-parse --git-path hooks)/pre-push` (honours core.hooksPath,
works from linked worktrees); a foreign pre-push hook is kept as `pre-push.tracker-chained` and
called by ours. Husky: one guarded line in `.husky/pre-push` calling the script installed at
`<git common dir>/tracker/pre-push`. `uninstall` removes only what `install` added.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from tracker.errors import UsageError
from tracker.gitutil import git

SIGNATURE = "deploy-tracker pre-push hook"
CHAINED = "pre-push.tracker-chained"
HUSKY_MARK = "# deploy-tracker"
HUSKY_LINE = (
    '_tracker_in=$(mktemp 2>/dev/null) && { cat >"$_tracker_in";'
    ' _tracker_hook="$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null)'
    '/tracker/pre-push"; if [ -x "$_tracker_hook" ]; then "$_tracker_hook" "$@"'
    ' <"$_tracker_in" || true; fi; exec <"$_tracker_in"; rm -f "$_tracker_in"; } || true'
    f"  {HUSKY_MARK}: record pushes (tracker hooks install --husky)"
)
PRE_COMMIT_SNIPPET = """\
default_install_hook_types: [pre-commit, pre-push]
repos:
  - repo: local
    hooks:
      - id: tracker-record-push
        name: record the push (deploy-tracker)
        entry: tracker-pre-push
        language: system
        stages: [pre-push]
        always_run: true
        pass_filenames: false"""


def template() -> str:
    """The hook script shipped with the package (`tracker/hooks` in a wheel, `hooks/` here)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "hooks" / "pre-push", here.parent / "hooks" / "pre-push"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise UsageError(f"the hook script is missing beside {here}: the installation is broken")


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def render(python: str, branch: str) -> str:
    """The hook script with the interpreter and the deployed branch filled in."""
    out = []
    for line in template().splitlines(keepends=True):
        if line.startswith("TRACKER_PYTHON="):
            line = f"TRACKER_PYTHON={_sh_quote(python)}\n"
        elif line.startswith("TRACKER_DEFAULT_BRANCH="):
            line = f"TRACKER_DEFAULT_BRANCH={_sh_quote(branch)}\n"
        out.append(line)
    return "".join(out)


def _rev_parse(repo: Path, *args: str) -> Path:
    out = git(["rev-parse", "--path-format=absolute", *args], cwd=repo)
    if not out:
        raise UsageError(f"{repo} is not inside a git repository")
    return Path(out)


def hooks_dir(repo: Path) -> Path:
    return _rev_parse(repo, "--git-path", "hooks")


def common_dir(repo: Path) -> Path:
    return _rev_parse(repo, "--git-common-dir")


def _toplevel(repo: Path) -> Path | None:
    out = git(["rev-parse", "--show-toplevel"], cwd=repo)
    return Path(out) if out else None


def _branch(repo: Path) -> str:
    try:
        from tracker.config import load_read_settings

        return load_read_settings(_toplevel(repo)).branch
    except ImportError:
        return os.environ.get("TRACKER_BRANCH") or "main"


def is_ours(path: Path) -> bool:
    try:
        return SIGNATURE in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def _write_script(path: Path, text: str) -> None:
    """Write an executable script atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    temp.write_text(text, encoding="utf-8")
    temp.chmod(0o755)
    os.replace(temp, path)


def install(
    repo: Path, *, husky: bool = False, pre_commit: bool = False, python: str = sys.executable
) -> list[str]:
    """Install the push hook; human lines saying what was done."""
    repo = Path(repo)
    python = os.path.abspath(python)  # not resolved: a venv's python is a symlink that matters
    script = render(python, _branch(repo))
    if pre_commit:
        return _install_pre_commit(repo)
    if husky:
        return _install_husky(repo, script)
    return _install_plain(repo, script)


def _install_plain(repo: Path, script: str) -> list[str]:
    hooks = hooks_dir(repo)
    if (hooks / "h").is_file() and hooks.name == "_" and hooks.parent.name == ".husky":
        raise UsageError("this repository uses husky (core.hooksPath=.husky/_): use --husky")
    hook, chained, lines = hooks / "pre-push", hooks / CHAINED, []
    if hook.exists() and not is_ours(hook):
        if chained.exists():
            raise UsageError(
                f"{hook} is not ours and {chained} already exists; move one of them away first"
            )
        hook.rename(chained)
        lines.append(f"kept the existing pre-push hook as {chained}; ours calls it first")
    verb = "updated" if hook.exists() else "installed"
    _write_script(hook, script)
    lines.append(f"{verb} {hook}")
    return lines


def _install_husky(repo: Path, script: str) -> list[str]:
    top = _toplevel(repo)
    if top is None:
        raise UsageError("--husky needs a working tree")
    target = common_dir(repo) / "tracker" / "pre-push"
    _write_script(target, script)
    husky_file = top / ".husky" / "pre-push"
    kept = _without_our_line(husky_file)
    body = [kept[0], HUSKY_LINE, *kept[1:]] if kept[:1] and kept[0].startswith("#!") else [
        HUSKY_LINE, *kept
    ]  # fmt: skip
    husky_file.parent.mkdir(parents=True, exist_ok=True)
    husky_file.write_text("\n".join(body) + "\n", encoding="utf-8")
    husky_file.chmod(husky_file.stat().st_mode | 0o755)
    return [f"installed {target}", f"added one line calling it to {husky_file}"]


def _without_our_line(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if HUSKY_MARK not in line]


def _install_pre_commit(repo: Path) -> list[str]:
    lines = [
        "add this to .pre-commit-config.yaml, then run `pre-commit install --hook-type pre-push`:",
        "",
        *PRE_COMMIT_SNIPPET.splitlines(),
        "",
        "(`tracker-pre-push` must be on PATH; or use the `record-push` hook of this project's"
        " .pre-commit-hooks.yaml with `repo: <its git URL>`)",
    ]
    if git(["config", "core.hooksPath"], cwd=repo):
        lines.append("note: pre-commit refuses to install while core.hooksPath is set")
    return lines


def uninstall(repo: Path) -> list[str]:
    """Remove what `install` added, restoring a chained hook; human lines saying what."""
    repo, lines = Path(repo), []
    hooks = hooks_dir(repo)
    hook, chained = hooks / "pre-push", hooks / CHAINED
    if is_ours(hook):
        hook.unlink()
        lines.append(f"removed {hook}")
        if chained.exists():
            chained.rename(hook)
            lines.append(f"restored the earlier pre-push hook {hook}")
    elif chained.exists():
        lines.append(f"left {chained} alone: {hook} is no longer ours")
    lines += _uninstall_husky(repo)
    return lines or ["nothing to remove: the hook was not installed"]


def _uninstall_husky(repo: Path) -> list[str]:
    lines = []
    target = common_dir(repo) / "tracker" / "pre-push"
    if is_ours(target):
        target.unlink()
        lines.append(f"removed {target}")
    top = _toplevel(repo)
    husky_file = top / ".husky" / "pre-push" if top else None
    if husky_file and husky_file.is_file() and HUSKY_MARK in husky_file.read_text("utf-8"):
        kept = _without_our_line(husky_file)
        husky_file.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        lines.append(f"removed our line from {husky_file}")
    return lines


def _installed_python(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("TRACKER_PYTHON="):
            value = line.split("=", 1)[1].strip()
            return value[1:-1].replace("'\\''", "'") if value[:1] == "'" else value
    return None


def status(repo: Path) -> dict[str, Any]:
    """Where the hook is installed, what it chains, and whether its interpreter exists."""
    repo = Path(repo)
    hooks = hooks_dir(repo)
    hook, husky_script = hooks / "pre-push", common_dir(repo) / "tracker" / "pre-push"
    top = _toplevel(repo)
    husky_file = top / ".husky" / "pre-push" if top else None
    husky = bool(husky_file and husky_file.is_file() and HUSKY_MARK in husky_file.read_text())
    plain = is_ours(hook)
    script = hook if plain else husky_script if is_ours(husky_script) else None
    python = _installed_python(script) if script else None
    pre_commit_hook = hook.is_file() and "pre-commit" in hook.read_text(errors="replace")
    config = top / ".pre-commit-config.yaml" if top else None
    return {
        "installed": plain or husky,
        "hooks_dir": str(hooks),
        "plain": plain,
        "husky": husky,
        "husky_file": str(husky_file) if husky else None,
        "pre_commit": bool(
            pre_commit_hook and config and config.is_file() and "tracker" in config.read_text()
        ),
        "script": str(script) if script else None,
        "chained": str(hooks / CHAINED) if (hooks / CHAINED).exists() else None,
        "python": python,
        "python_exists": bool(python and os.access(python, os.X_OK)),
    }
