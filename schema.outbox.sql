-- The fleet log's outbox (SPEC §10, tracker/log/fleet.py): a SQLite file beside each machine's
-- local log (`events.db.outbox`), holding what this machine appended and has not yet forwarded to
-- the shared log, and when it last reached it. Numbered migrations (PRAGMA user_version), as
-- schema.sql; only the fleet log opens this file (nothing of it exists without TRACKER_LOG_URL).

-- migration: 1
CREATE TABLE IF NOT EXISTS outbox (
    n       INTEGER PRIMARY KEY AUTOINCREMENT,        -- order of appending on this machine
    key     TEXT    NOT NULL UNIQUE,                  -- idempotency key: forwarded once
    stream  TEXT    NOT NULL,
    type    TEXT    NOT NULL,
    data    TEXT    NOT NULL CHECK (json_valid(data)),
    at      REAL    NOT NULL                          -- recorded_at, kept through the forward
);

CREATE TABLE IF NOT EXISTS sync_state (                -- pulled_at, error, failed_at, mirror_of
    name    TEXT PRIMARY KEY,
    value   TEXT NOT NULL
);
