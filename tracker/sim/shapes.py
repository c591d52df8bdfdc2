"""The App Platform API's documented JSON shapes, ugly parts included.

Zero progress counters are omitted (godo's `omitempty`), "unset" times are Go's zero time, a
failing step carries `reason` on its leaf and its top-level step only, and the archived logs are
the lines a real build or deploy prints. Everything here is a pure function of a `Script` and
`now`.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from tracker.clock import iso
from tracker.sim.timeline import Leaf, Script

Json = dict[str, Any]

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time: DigitalOcean's "unset"
COMPONENT_KINDS = ("services", "static_sites", "workers", "jobs", "functions")
BUILD_FAILURE_LINE = "npm ERR! Failed at the sample-app@1.0.0 build script."
DEPLOY_FAILURE_LINE = (
    "ERROR failed health checks after 6 attempts with error Readiness probe failed: "
    "dial tcp 10.244.17.9:8080: connect: connection refused"
)
BUILD_REASON = {
    "code": "BuildJobExitNonZero",
    "message": "Your build job failed because it returned a non-zero exit code. "
    "See the logs for details.",
}
DEPLOY_REASON = {
    "code": "DeployContainerHealthChecksFailed",
    "message": "Your deploy failed because your container failed to pass health checks. "
    "See the logs for details.",
}
_FAILING_LEAF = {
    "build_error": "build.components.web",
    "deploy_error": "deploy.components.web.wait",
}


def api_time(ts: float) -> str:
    """The API's own time format: UTC, whole seconds, `Z`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_body(error_id: str, message: str) -> bytes:
    return json.dumps({"id": error_id, "message": message}).encode()


def _leaf_state(s: Script, leaf: Leaf, now: float) -> Json:
    terminal = now >= s.end_at
    cut = min(now, s.end_at)
    name = leaf.path.rsplit(".", 1)[-1]
    step: Json = {"name": name}
    if leaf.component:
        step["component_name"] = leaf.component
    if leaf.message_base:
        step["message_base"] = leaf.message_base
    if terminal and s.end_phase == "ERROR" and leaf.path == _FAILING_LEAF.get(s.outcome):
        reason = BUILD_REASON if s.outcome == "build_error" else DEPLOY_REASON
        step.update(status="ERROR", started_at=api_time(leaf.start), ended_at=api_time(s.end_at))
        step["reason"] = dict(reason)
    elif leaf.end <= cut:
        step.update(status="SUCCESS", started_at=api_time(leaf.start), ended_at=api_time(leaf.end))
    elif leaf.start <= cut and not terminal:
        step.update(status="RUNNING", started_at=api_time(leaf.start))
    else:
        step["status"] = "PENDING"
    return step


def _parent_status(children: list[Json]) -> str:
    statuses = {c["status"] for c in children}
    if "ERROR" in statuses:
        return "ERROR"
    if statuses == {"SUCCESS"}:
        return "SUCCESS"
    if "RUNNING" in statuses or ("SUCCESS" in statuses and "PENDING" in statuses):
        return "RUNNING"
    return "PENDING"


def _nest(items: list[tuple[list[str], Json]], depth: int) -> list[Json]:
    """Group leaf steps by their dotted path into the nested `steps` tree."""
    groups: dict[str, list[tuple[list[str], Json]]] = {}
    for parts, step in items:
        groups.setdefault(parts[depth], []).append((parts, step))
    out: list[Json] = []
    for name, members in groups.items():
        if len(members) == 1 and len(members[0][0]) == depth + 1:
            out.append(members[0][1])
            continue
        children = _nest(members, depth + 1)
        parent: Json = {"name": name, "status": _parent_status(children)}
        starts = [c["started_at"] for c in children if "started_at" in c]
        if starts:
            parent["started_at"] = min(starts)
        if parent["status"] in ("SUCCESS", "ERROR") and all("ended_at" in c for c in children):
            parent["ended_at"] = max(c["ended_at"] for c in children)
        reason = next((c["reason"] for c in children if "reason" in c), None)
        if reason:
            parent["reason"] = reason
        parent["steps"] = children
        out.append(parent)
    return out


def _strip_reasons_below_top(steps: list[Json], depth: int = 0) -> None:
    """The API puts `reason` on the failing leaf and on its top-level step only."""
    for step in steps:
        children = step.get("steps")
        if children:
            if depth > 0:
                step.pop("reason", None)
            _strip_reasons_below_top(children, depth + 1)


def _progress(s: Script, now: float) -> Json:
    leaves = [_leaf_state(s, leaf, now) for leaf in s.leaves()]
    counts: Json = {}
    for status in ("PENDING", "RUNNING", "SUCCESS", "ERROR"):
        n = sum(1 for step in leaves if step["status"] == status)
        if n:  # zero counters are omitted, as godo's `omitempty` does
            counts[f"{status.lower()}_steps"] = n
    counts["total_steps"] = len(leaves)
    steps = _nest(
        [(leaf.path.split("."), st) for leaf, st in zip(s.leaves(), leaves, strict=True)], 0
    )
    _strip_reasons_below_top(steps)
    counts["steps"] = steps
    summary = [{k: v for k, v in st.items() if k != "steps"} for st in steps]
    counts["summary_steps"] = summary
    return counts


def _updated_at(s: Script, now: float) -> float:
    cut = min(now, s.end_at)
    marks = [s.created_at] + [t for leaf in s.leaves() for t in (leaf.start, leaf.end) if t <= cut]
    if now >= s.end_at:
        marks.append(s.end_at)
    return max(marks)


def _cause(s: Script, app_name: str) -> Json:
    if s.sha is None:
        user = {"uuid": str(uuid.UUID(int=1)), "email": "ops@example.com", "full_name": "Ops"}
        return {
            "cause": "manual",
            "cause_details": {
                "type": "MANUAL",
                "digitalocean_user_action": {"user": user, "name": "CREATE_DEPLOYMENT"},
            },
        }
    git_push: Json = {
        "github": {"repo": f"acme/{app_name}", "branch": "main"},
        "username": "octocat",
        "commit_author": "Octo Cat",
        "commit_message": "Simulated change",
    }
    if s.sha_in in ("both", "cause_details"):
        git_push["commit_sha"] = s.sha
    return {
        "cause": f"commit {s.sha[:7]} pushed to github/acme/{app_name}",
        "cause_details": {"type": "DEPLOY_ON_PUSH", "git_push": git_push},
    }


def spec_json(app_name: str, component: str) -> Json:
    web = {
        "name": "web",
        "github": {"repo": f"acme/{app_name}", "branch": "main", "deploy_on_push": True},
        "environment_slug": "node-js",
        "instance_size_slug": "apps-s-1vcpu-0.5gb",
        "instance_count": 1,
        "http_port": 8080,
        "routes": [{"path": "/"}],
    }
    return {"name": app_name, "region": "ams", component: [web]}


def deployment_json(s: Script, now: float, app_name: str) -> Json:
    piece: Json = {"name": "web"}
    if s.sha is not None and s.sha_in in ("both", "components"):
        piece["source_commit_hash"] = s.sha
    since = s.phase_since(now)
    return {
        "id": s.id,
        "spec": spec_json(app_name, s.component),
        s.component: [piece],
        "created_at": api_time(s.created_at),
        "updated_at": api_time(_updated_at(s, now)),
        "phase_last_updated_at": ZERO_TIME if since is None else api_time(since),
        **_cause(s, app_name),
        "phase": s.phase_at(now),
        "progress": _progress(s, now),
        "tier_slug": "basic",
    }


def _log_lines(s: Script, stage: str) -> list[str]:
    """The text of a stage's archived log (without timestamps)."""
    if stage == "BUILD":
        sha = s.sha or "0" * 40
        lines = [
            "╭──────────── git repo clone ───────────╼",
            "│ › fetching app source code",
            '│ => Selecting branch "main"',
            f'│ => Checking out commit "{sha}"',
            "│  ✔ cloned repo to /workspace",
            "╰────────────────────────────────────────╼",
            "╭──────────── buildpack detection ───────────╼",
            "│ › using Ubuntu 22.04 stack",
            "│ Detected the following buildpacks suitable to build your app:",
            "│    digitalocean/node-js    v0.3.9 (Node.js)",
            "╰─────────────────────────────────────────────╼",
            "╭──────────── app build ───────────╼",
        ]
        lines += [f"│ added {n * 37} packages in {n}s" for n in range(1, 9)]
        lines += ["│ Running custom build command: npm run build", "│ > sample-app@1.0.0 build"]
        if s.outcome == "build_error" and s.end_phase == "ERROR":
            return [
                *lines,
                "│ src/index.ts(12,7): error TS2322: Type 'string' is not assignable to 'number'.",
                "│ npm ERR! code ELIFECYCLE",
                "│ npm ERR! errno 2",
                BUILD_FAILURE_LINE,
            ]
        if s.end_at < s.build_end:  # canceled or superseded mid-build
            return [*lines, "│ ✘ build canceled"]
        return [*lines, "│ ✔ build complete", "╰──────────────────────────────────╼"]
    lines = ["› deploying web", "› starting container", "> sample-app@1.0.0 start"]
    lines += [f"health check {n}: waiting for :8080" for n in range(1, 7)]
    if s.outcome == "deploy_error" and s.end_phase == "ERROR":
        return [*lines, DEPLOY_FAILURE_LINE]
    if s.end_at < s.deploy_end:
        return [*lines, "✘ deploy canceled"]
    return [*lines, "Server listening on :8080", "✔ health checks passed"]


def stamped_log(s: Script, stage: str, now: float) -> str:
    """The archived log up to `now`, lines spread evenly over the stage's run."""
    lines = _log_lines(s, stage)
    start = s.build_start if stage == "BUILD" else s.deploy_start
    end = min(s.build_end if stage == "BUILD" else s.deploy_end, s.end_at)
    step = (end - start) / max(len(lines), 1)
    out = []
    for i, text in enumerate(lines):
        ts = start + (i + 1) * step
        if ts <= now:
            out.append(f"web {iso(ts)} {text}")
    return "".join(line + "\n" for line in out)
