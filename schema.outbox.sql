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

CREATE TABLE IF NOT EXISTS sync_state (                -- pulled_at, error, failed_at, mirror_of, resumed:<app>
    name    TEXT PRIMARY KEY,
    value   TEXT NOT NULL
);

-- migration: 2
-- The watcher's fence (JSON: app, holder, fence) an event was appended under, NULL for the
-- unfenced (pushes, readers, a watcher without the lease): a fenced event the shared log refuses
-- (another watcher took the app over) is deleted, never forwarded again.
ALTER TABLE outbox ADD COLUMN fence TEXT;

-- The fleet's watch leases as the last pull read them: `remaining_s` on the server's clock when
-- read, `read_at` this machine's time then (so a lease is judged expired on one clock only).
CREATE TABLE IF NOT EXISTS leases (
    app         TEXT    PRIMARY KEY,
    holder      TEXT    NOT NULL,
    host        TEXT    NOT NULL,
    pid         INTEGER NOT NULL,
    fence       INTEGER NOT NULL,
    remaining_s REAL    NOT NULL,
    read_at     REAL    NOT NULL
);
