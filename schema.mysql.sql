-- The fleet's shared event log on MySQL 8 / MariaDB 10.6+ (SPEC §10, design/fleet.md §3).
--
-- Migrations are numbered: each starts with a line `-- migration: N`, and only an explicit
-- migrate (`tracker.log.mysql.migrate`; `tracker migrate --shared` later) runs them, under the
-- named lock `tracker:migrate`, recording each in `schema_migrations`. MySQL commits DDL at once
-- and cannot roll it back, so every step is additive and idempotent (IF NOT EXISTS, INSERT
-- IGNORE): a migration cut short runs again whole. Never edit a migration that has shipped.
--
-- Managed MySQL (DigitalOcean) grants no SUPER: no triggers, no stored functions; and it requires
-- a primary key on every table. Append-only is enforced by the `tracker` user's privileges
-- (README: SELECT and INSERT on `events`, UPDATE on `log_head` only). Streams and keys are
-- VARBINARY, so uniqueness is byte-exact on every server (no collation, no PAD SPACE).

-- migration: 1

-- The log. `seq` is not AUTO_INCREMENT: an appender takes `log_head` FOR UPDATE and writes
-- head+1, so positions are gapless and in commit order (a follower reading `seq > last` misses
-- nothing). `recorded_at` and `data` are kept as the text the client wrote, byte for byte, so
-- every machine's cache folds exactly the same events. `txn` tells an appender whose connection
-- broke mid-append whether its batch committed (found: written; else it sends the batch again).
CREATE TABLE IF NOT EXISTS events (
    seq         BIGINT          NOT NULL PRIMARY KEY,
    stream      VARBINARY(255)  NOT NULL,
    version     INT             NOT NULL,
    type        VARCHAR(64)     CHARACTER SET ascii NOT NULL,
    recorded_at VARCHAR(40)     CHARACTER SET ascii NOT NULL,
    data        LONGTEXT        CHARACTER SET utf8mb4 NOT NULL,
    ikey        VARBINARY(255)  NULL,
    origin      VARCHAR(255)    CHARACTER SET utf8mb4 NULL,
    txn         BINARY(16)      NOT NULL,          -- the appending batch's random id
    appended_at DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    UNIQUE KEY events_stream_version (stream, version),
    UNIQUE KEY events_ikey (ikey),
    KEY events_txn (txn),                          -- after a lost connection: was it written?
    CONSTRAINT events_version_positive CHECK (version >= 1)
) ENGINE = InnoDB;

-- One row: the last position given out. Every append locks it first (the serialisation point).
CREATE TABLE IF NOT EXISTS log_head (
    id       TINYINT NOT NULL PRIMARY KEY,
    last_seq BIGINT  NOT NULL,
    CONSTRAINT log_head_one_row CHECK (id = 1)
) ENGINE = InnoDB;

INSERT IGNORE INTO log_head (id, last_seq) VALUES (1, 0);

-- Which migrations ran, when and by whom.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INT          NOT NULL PRIMARY KEY,
    applied_at DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    applied_by VARCHAR(255) CHARACTER SET utf8mb4 NULL
) ENGINE = InnoDB;

-- migration: 2

-- One watcher per app fleet-wide (SPEC §10, design/fleet.md §2.3): the lease of an app
-- (`platform:app_id`), held by one watcher process (`holder`: machine id and pid) until
-- `expires_at`, on the server's clock (NOW(6): the clients' clocks never count). Taking over an
-- expired lease moves `fence` on; an append fenced with an older (holder, fence) is refused,
-- so a frozen or partitioned holder's late facts never reach the log after a takeover.
CREATE TABLE IF NOT EXISTS watch_leases (
    app        VARBINARY(255)  NOT NULL PRIMARY KEY,
    holder     VARBINARY(255)  NOT NULL,
    host       VARCHAR(255)    CHARACTER SET utf8mb4 NOT NULL,
    pid        BIGINT          NOT NULL,
    fence      BIGINT          NOT NULL,
    expires_at DATETIME(6)     NOT NULL
) ENGINE = InnoDB;

-- migration: 3

-- The fleet-wide API budget (design/fleet.md §2.4): DigitalOcean counts a token's calls across
-- every machine, so the calls are counted here, per token and per second of the server's clock.
-- `token_id` is the first 16 hex digits of the token's SHA-256, made by the client: never the
-- token. A reservation (`tracker.log.mysql_budget.reserve`) locks the token's head row FOR
-- UPDATE, so reservations of one token take turns, sums the last 60 and 3,600 buckets (a PK
-- range scan) and adds to the current bucket only when both limits still hold. It also deletes a
-- bounded number of buckets older than the hour: no purge job is needed.
CREATE TABLE IF NOT EXISTS api_budget_head (
    token_id    VARBINARY(64) NOT NULL PRIMARY KEY,
    reserved    BIGINT        NOT NULL DEFAULT 0,  -- calls reserved so far (diagnostics)
    refused     BIGINT        NOT NULL DEFAULT 0   -- reservations refused so far (diagnostics)
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS api_calls (
    token_id    VARBINARY(64) NOT NULL,
    bucket      BIGINT        NOT NULL,            -- floor(unix seconds), the server's clock
    calls       INT           NOT NULL,
    PRIMARY KEY (token_id, bucket)
) ENGINE = InnoDB;

-- migration: 4

-- Compatibility: the oldest client (its SCHEMA_VERSION) that may still use this log. A client
-- that finds every migration it knows applied uses the log even when newer ones are there too
-- (additive: it ignores what it does not know), unless `min_client` is above its own version:
-- a later migration that makes older clients unsafe (say, appends that must carry a new column)
-- raises it, with `UPDATE schema_compat SET min_client = GREATEST(min_client, N) WHERE id = 1`,
-- and such a client then refuses to read or append (its events wait in its outbox) and says
-- "upgrade tracker". One row, kept by its primary key and CHECK.
CREATE TABLE IF NOT EXISTS schema_compat (
    id         TINYINT NOT NULL PRIMARY KEY,
    min_client INT     NOT NULL,
    CONSTRAINT schema_compat_one_row CHECK (id = 1)
) ENGINE = InnoDB;

INSERT IGNORE INTO schema_compat (id, min_client) VALUES (1, 1);
