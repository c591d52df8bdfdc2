-- The tracker's event log: the single source of truth for every table, index and view.
--
-- Migrations are numbered. Each starts with a line `-- migration: N` and runs once, in one
-- transaction, when `PRAGMA user_version` is below N; the store then sets user_version to N.
-- Never edit a migration that has shipped: add a new one.

-- migration: 1

-- The log itself. Nothing ever updates or deletes an event (the triggers enforce it).
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,               -- global position, increasing in commit order
    stream      TEXT    NOT NULL,                  -- the full 40-hex commit SHA, or '$tracker'
    version     INTEGER NOT NULL CHECK (version >= 1),  -- 1, 2, 3 ... within a stream
    type        TEXT    NOT NULL,                  -- PushRecorded, DeploymentPolled, ...
    recorded_at TEXT    NOT NULL,                  -- UTC ISO-8601 with a Z
    data        TEXT    NOT NULL CHECK (json_valid(data)),
    key         TEXT    UNIQUE,                    -- idempotency key: the same fact twice is a no-op
    UNIQUE (stream, version)
);

CREATE TRIGGER events_are_append_only_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TRIGGER events_are_append_only_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

-- Projection: one row per commit, folded from its events (tracker/projections.py).
-- Times are epoch seconds (REAL); the view below shows them as ISO-8601.
CREATE TABLE deployments (
    sha                TEXT PRIMARY KEY,
    branch             TEXT,
    remote             TEXT,
    remote_url         TEXT,
    pushed_by          TEXT,
    host               TEXT,
    push_source        TEXT,
    state              TEXT NOT NULL,
    phase              TEXT,
    deployment_id      TEXT,
    pushed_at          REAL,
    confirmed_at       REAL,
    first_seen_at      REAL,     -- the deployment was first found on the platform
    finished_at        REAL,
    push_to_live_s     REAL,
    platform_finished_at REAL,   -- the platform's own time of the terminal phase
    detection_lag_s    REAL,     -- our detection minus the platform's time of the terminal phase
    polls              INTEGER NOT NULL DEFAULT 0,
    api_calls          INTEGER NOT NULL DEFAULT 0,
    db_queries         INTEGER NOT NULL DEFAULT 0,
    errors             INTEGER NOT NULL DEFAULT 0,
    retries            INTEGER NOT NULL DEFAULT 0,
    steps_done         INTEGER,
    steps_total        INTEGER,
    reason_code        TEXT,
    reason_message     TEXT,
    failed_step        TEXT,
    log_tail           TEXT,     -- JSON array of lines
    superseded_by      TEXT,
    superseded_went_live INTEGER,
    phases             TEXT,     -- JSON object: phase -> epoch seconds it was first seen
    monitor_pid        INTEGER,
    monitor_host       TEXT,
    monitor_started_at REAL,
    monitor_stopped    INTEGER NOT NULL DEFAULT 0,
    terminal_source    TEXT,
    first_seq          INTEGER NOT NULL,
    last_seq           INTEGER NOT NULL,
    last_event_at      REAL NOT NULL,
    event_count        INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX deployments_by_pushed_at ON deployments (pushed_at);

-- Projection: one row per event that cost a call to a source (DeploymentPolled, LogsFetched),
-- for rate-limit windows and error counts without scanning the log.
CREATE TABLE source_calls (
    seq                 INTEGER PRIMARY KEY,
    sha                 TEXT NOT NULL,
    at                  REAL NOT NULL,
    source              TEXT NOT NULL,
    kind                TEXT NOT NULL,  -- poll / logs
    api_calls           INTEGER NOT NULL,
    db_queries          INTEGER NOT NULL,
    ok                  INTEGER NOT NULL,
    error_kind          TEXT,
    retry               INTEGER NOT NULL,
    latency_ms          REAL,
    ratelimit_remaining INTEGER
);

CREATE INDEX source_calls_by_at ON source_calls (at);

-- The last event each projection has folded; written in the same transaction as its rows.
CREATE TABLE projection_checkpoints (
    name     TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
);

-- The contract for any SQLite client: one row per commit, read-only.
-- `stale`: in progress or pending with a monitor that has said nothing for five minutes
-- (the CLI also checks whether the monitor's process is alive).
CREATE VIEW deployment_status AS
SELECT
    sha,
    substr(sha, 1, 7) AS short_sha,
    branch,
    CASE
        WHEN state IN ('pending', 'in_progress') AND monitor_pid IS NOT NULL
             AND (monitor_stopped = 1
                  OR last_event_at < (julianday('now') - 2440587.5) * 86400.0 - 300)
        THEN 'stale'
        ELSE state
    END AS state,
    CASE
        WHEN state = 'succeeded' THEN 0
        WHEN state = 'superseded' AND superseded_went_live = 1 THEN 0
        WHEN state IN ('failed', 'canceled', 'timed_out', 'rejected', 'superseded') THEN 1
        ELSE 2
    END AS exit_code,
    phase,
    deployment_id,
    strftime('%Y-%m-%dT%H:%M:%fZ', pushed_at, 'unixepoch') AS pushed_at,
    strftime('%Y-%m-%dT%H:%M:%fZ', finished_at, 'unixepoch') AS finished_at,
    push_to_live_s,
    polls,
    api_calls,
    errors,
    reason_code,
    reason_message,
    failed_step,
    superseded_by,
    monitor_pid,
    monitor_host,
    strftime('%Y-%m-%dT%H:%M:%fZ', last_event_at, 'unixepoch') AS last_event_at
FROM deployments;
