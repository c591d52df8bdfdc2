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

-- migration: 2
-- Stats without scanning: the numbers `tracker stats` counts, sums and ranks live in an index in
-- value order and in totals by hour that triggers keep. Projections are disposable: this
-- migration leaves a `replay` row among the checkpoints, and the store that opens the log next
-- replays it into every projection (as `tracker rebuild` does) and removes the row.

-- The branch a call was made for (its commit's branch at the time), for `stats --branch`.
ALTER TABLE source_calls ADD COLUMN branch TEXT;

-- Projection: per commit, the values stats reads (tracker/projections.py `measures`), integers:
-- state:NAME (1), push_to_live_ms, detection_lag_ms, api_calls (when any), phase:NAME (ms from
-- that phase to the next), and for finished deployments that made API calls compared_api_calls
-- and fixed_10s_polls (what a fixed 10 s poll would have spent on the same deployment).
-- Only a row's value is ever updated; the triggers below keep the totals.
CREATE TABLE deployment_measures (
    id        INTEGER PRIMARY KEY,
    sha       TEXT    NOT NULL,
    measure   TEXT    NOT NULL,
    value     INTEGER NOT NULL,
    pushed_at REAL    NOT NULL,  -- copied from the row, for --since without a lookup
    branch    TEXT,              -- copied from the row, for --branch without a lookup
    UNIQUE (sha, measure)
);

-- Each measure in value order with the filter columns beside it: a percentile is a walk of this
-- index to its rank (ORDER BY value LIMIT 1 OFFSET k) that never sorts and never leaves it.
CREATE INDEX deployment_measures_by_value
    ON deployment_measures (measure, value, pushed_at, branch);

-- Count and sum of each measure by branch and hour of the push ('' for no branch).
CREATE TABLE measure_totals (
    measure TEXT    NOT NULL,
    branch  TEXT    NOT NULL,
    hour    INTEGER NOT NULL,  -- CAST(pushed_at / 3600 AS INTEGER)
    count   INTEGER NOT NULL,
    total   INTEGER NOT NULL,
    PRIMARY KEY (measure, branch, hour)
) WITHOUT ROWID;

CREATE TRIGGER deployment_measures_keep_their_keys
BEFORE UPDATE OF sha, measure, pushed_at, branch ON deployment_measures
BEGIN
    SELECT RAISE(ABORT, 'only the value of a deployment_measures row is updated');
END;

CREATE TRIGGER deployment_measures_update_totals AFTER UPDATE OF value ON deployment_measures
BEGIN
    UPDATE measure_totals SET total = total - OLD.value + NEW.value
    WHERE measure = OLD.measure AND branch = coalesce(OLD.branch, '')
        AND hour = CAST(OLD.pushed_at / 3600 AS INTEGER);
END;

CREATE TRIGGER deployment_measures_add_to_totals AFTER INSERT ON deployment_measures
BEGIN
    INSERT INTO measure_totals (measure, branch, hour, count, total)
    VALUES (NEW.measure, coalesce(NEW.branch, ''), CAST(NEW.pushed_at / 3600 AS INTEGER), 1,
            NEW.value)
    ON CONFLICT (measure, branch, hour) DO UPDATE SET
        count = count + 1, total = total + excluded.total;
END;

CREATE TRIGGER deployment_measures_take_from_totals AFTER DELETE ON deployment_measures
BEGIN
    UPDATE measure_totals SET count = count - 1, total = total - OLD.value
    WHERE measure = OLD.measure AND branch = coalesce(OLD.branch, '')
        AND hour = CAST(OLD.pushed_at / 3600 AS INTEGER);
    DELETE FROM measure_totals
    WHERE count = 0 AND measure = OLD.measure AND branch = coalesce(OLD.branch, '')
        AND hour = CAST(OLD.pushed_at / 3600 AS INTEGER);
END;

-- Calls summed by hour, branch, source, outcome and retry ('' stands for "none", so that the
-- key has no NULL in it); the triggers keep it equal to `source_calls` grouped the same way.
CREATE TABLE call_totals (
    hour        INTEGER NOT NULL,  -- CAST(at / 3600 AS INTEGER)
    branch      TEXT    NOT NULL,  -- '' when the call's commit was never pushed
    source      TEXT    NOT NULL,
    ok          INTEGER NOT NULL,
    error_kind  TEXT    NOT NULL,  -- '' when ok; 'unknown' when a failure has no kind
    retry       INTEGER NOT NULL,
    calls       INTEGER NOT NULL,
    api_calls   INTEGER NOT NULL,
    db_queries  INTEGER NOT NULL,
    PRIMARY KEY (hour, branch, source, ok, error_kind, retry)
) WITHOUT ROWID;

CREATE TRIGGER source_calls_are_not_updated BEFORE UPDATE ON source_calls
BEGIN
    SELECT RAISE(ABORT, 'source_calls rows are deleted and inserted, not updated');
END;

CREATE TRIGGER source_calls_add_to_totals AFTER INSERT ON source_calls
BEGIN
    INSERT INTO call_totals
        (hour, branch, source, ok, error_kind, retry, calls, api_calls, db_queries)
    VALUES (
        CAST(NEW.at / 3600 AS INTEGER), coalesce(NEW.branch, ''), NEW.source, NEW.ok,
        CASE WHEN NEW.ok THEN '' ELSE coalesce(NEW.error_kind, 'unknown') END, NEW.retry,
        1, NEW.api_calls, NEW.db_queries
    )
    ON CONFLICT (hour, branch, source, ok, error_kind, retry) DO UPDATE SET
        calls = calls + 1,
        api_calls = api_calls + excluded.api_calls,
        db_queries = db_queries + excluded.db_queries;
END;

CREATE TRIGGER source_calls_take_from_totals AFTER DELETE ON source_calls
BEGIN
    UPDATE call_totals SET
        calls = calls - 1,
        api_calls = api_calls - OLD.api_calls,
        db_queries = db_queries - OLD.db_queries
    WHERE hour = CAST(OLD.at / 3600 AS INTEGER) AND branch = coalesce(OLD.branch, '')
        AND source = OLD.source AND ok = OLD.ok
        AND error_kind = CASE WHEN OLD.ok THEN '' ELSE coalesce(OLD.error_kind, 'unknown') END
        AND retry = OLD.retry;
    DELETE FROM call_totals WHERE calls = 0 AND hour = CAST(OLD.at / 3600 AS INTEGER);
END;

-- Replay the log into every projection (the store does it outside the lock, once this commits).
INSERT INTO projection_checkpoints (name, last_seq)
SELECT 'replay', 0 WHERE EXISTS (SELECT 1 FROM events);

-- migration: 3
-- Pushes and attempts (SPEC §3): a commit pushed again is a new attempt. The row follows the
-- newest; the earlier ones are summed up in `previous_attempts` (a JSON list, tracker/
-- projections.py `retire`), and their measures stay in `deployment_measures` under `N:sha`, so
-- that stats counts each attempt once. A replay folds the log again under the new rules (which
-- also bound the platform's times: SPEC §3, and add the measure `superseded_live`, so that stats
-- counts a commit superseded by a successor that contains it and went live as a success).
ALTER TABLE deployments ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE deployments ADD COLUMN previous_attempts TEXT;
-- Why nothing can watch the commit (a refused token, a setting the monitor rejects) and the fix.
ALTER TABLE deployments ADD COLUMN not_watched TEXT;

-- `stats --since` over a few deployments reads their measures by push time (every attempt's,
-- not only the newest's, which a join with `deployments` would give).
CREATE INDEX deployment_measures_by_pushed_at ON deployment_measures (pushed_at);

DROP VIEW IF EXISTS deployment_status;
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
    strftime('%Y-%m-%dT%H:%M:%fZ', last_event_at, 'unixepoch') AS last_event_at,
    attempt
FROM deployments;

INSERT INTO projection_checkpoints (name, last_seq)
SELECT 'replay', 0 WHERE EXISTS (SELECT 1 FROM events)
ON CONFLICT (name) DO NOTHING;
