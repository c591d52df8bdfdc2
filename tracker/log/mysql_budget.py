"""The fleet-wide API budget on the shared log's MySQL (SPEC §10, design/fleet.md §2.4).

DigitalOcean counts a token's calls across every machine that uses it, so a machine's own count
says little in a fleet. Before a request a watcher reserves it here: `reserve` is ONE round trip
(a multi-statement transaction) that

- creates the token's row in `api_budget_head` if need be and locks it FOR UPDATE, so that the
  reservations of one token take turns (and those of other tokens do not wait for them);
- deletes at most `PURGE_LIMIT` buckets older than the hour (bounded work: no purge job);
- sums the calls of the last 60 and 3,600 one-second buckets by the server's clock (a range scan
  of the primary key), the current bucket included: every call of the last minute is counted
  whatever the fraction of the second (up to a second too many, never too few);
- adds `n` to the current bucket only when both sums plus `n` stay within the limits;
- and, when it did not, says when a call would fit: the moment enough of the oldest buckets have
  left the window (a running sum, newest first, over the window's buckets).

Calls made beyond what was reserved (a further page, the failure logs) are added afterwards by
`add`, one statement, unconditionally: they were made. Only the token's id (`token_id`: a hash
the client makes) is stored, never the token. The connection must allow multi-statements.
"""

from __future__ import annotations

import math
import re
from typing import Any

MINUTE_BUCKETS = 60  # one-second buckets back from the current one: b-60 .. b
HOUR_BUCKETS = 3600
PURGE_LIMIT = 100  # old buckets deleted per reservation (at most one is made per second)
_TOKEN_ID = re.compile(r"^[0-9a-f]{8,64}$")


def _check(token_id: str, n: int, per_minute: int, per_hour: int) -> None:
    if not _TOKEN_ID.match(token_id):
        raise ValueError("token_id must be 8 to 64 lower-case hex digits (a hash, not a token)")
    if not (1 <= n <= per_minute and n <= per_hour):
        raise ValueError(
            f"cannot reserve {n} calls under {per_minute}/minute and {per_hour}/hour: never fits"
        )


def _reserve_sql(token_id: str, n: int, per_minute: int, per_hour: int) -> tuple[str, list[Any]]:
    """The reservation batch: values bound by the driver, names and numbers constant (the numbers
    are checked ints). Its last statement selects whether it reserved, the server's time, and
    the oldest bucket of each window whose leaving would let `n` more calls in."""
    m, h = MINUTE_BUCKETS, HOUR_BUCKETS
    sums = (
        f"SELECT coalesce(sum(IF(bucket >= @tb_b - {m}, calls, 0)), 0), coalesce(sum(calls), 0)"
        f" INTO @tb_m, @tb_h FROM api_calls WHERE token_id = %s AND bucket >= @tb_b - {h}"
    )
    sql = [
        "START TRANSACTION",
        "INSERT INTO api_budget_head (token_id) VALUES (%s)"
        " ON DUPLICATE KEY UPDATE token_id = token_id",
        "SELECT reserved INTO @tb_r FROM api_budget_head WHERE token_id = %s FOR UPDATE",
        "SET @tb_now = unix_timestamp(now(6))",
        "SET @tb_b = floor(@tb_now)",
        f"DELETE FROM api_calls WHERE token_id = %s AND bucket < @tb_b - {HOUR_BUCKETS}"
        f" ORDER BY bucket LIMIT {PURGE_LIMIT}",
        sums,
        f"SET @tb_ok = (@tb_m + {n} <= {per_minute} AND @tb_h + {n} <= {per_hour})",
        f"INSERT INTO api_calls (token_id, bucket, calls) SELECT %s, @tb_b, {n} FROM DUAL"
        f" WHERE @tb_ok ON DUPLICATE KEY UPDATE calls = calls + {n}",
        f"UPDATE api_budget_head SET reserved = reserved + IF(@tb_ok, {n}, 0),"
        " refused = refused + IF(@tb_ok, 0, 1) WHERE token_id = %s",
        _fits("m", m, n, per_minute),
        _fits("h", h, n, per_hour),
        "COMMIT",
        "SELECT @tb_ok, @tb_now, @tb_m, @tb_h, @tb_fm, @tb_fh",
    ]
    text = ";\n".join(sql)
    return text, [token_id] * text.count("%s")  # the token's id is the only value bound


def _fits(window: str, back: int, n: int, limit: int) -> str:
    """Into `@tb_f<window>`: the oldest bucket of the window such that the calls of the buckets
    newer than it, plus `n`, are within `limit` (a running sum, newest first); run only when
    the reservation was refused."""
    return (
        f"SELECT min(bucket) INTO @tb_f{window} FROM ("
        " SELECT bucket, coalesce(sum(calls) OVER (ORDER BY bucket DESC"
        " ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS newer"
        f" FROM api_calls WHERE token_id = %s AND bucket >= @tb_b - {back} AND NOT @tb_ok"
        f") AS w WHERE newer + {n} <= {limit}"
    )


def reserve(conn: Any, token_id: str, n: int, per_minute: int, per_hour: int) -> float:
    """Reserve `n` API calls of the token `token_id` (one round trip): 0 when reserved, else the
    seconds (> 0) until `n` calls would fit under both `per_minute` and `per_hour`, by the
    server's clock. The server's errors are raised as the driver raises them."""
    _check(token_id, n, per_minute, per_hour)
    sql, args = _reserve_sql(token_id, n, per_minute, per_hour)
    result: tuple[Any, ...] | None = None
    with conn.cursor() as cur:
        cur.execute(sql, args)
        while True:
            if cur.description:
                result = cur.fetchone()
            if not cur.nextset():
                break
    if result is None:
        raise RuntimeError("the budget's reservation said nothing")
    ok, now, minute, hour, fit_m, fit_h = result
    if ok:
        return 0.0
    waits = [0.0]
    if int(minute) + n > per_minute and fit_m is not None:
        waits.append(int(fit_m) + MINUTE_BUCKETS + 1 - float(now))
    if int(hour) + n > per_hour and fit_h is not None:
        waits.append(int(fit_h) + HOUR_BUCKETS + 1 - float(now))
    wait = max(waits)
    # Refused, yet no bucket says when (calls added meanwhile): look again in a second.
    return wait if wait > 0 and math.isfinite(wait) else 1.0


def add(conn: Any, token_id: str, n: int) -> None:
    """Count `n` calls made beyond those reserved (a further page, failure logs), in the current
    bucket, whatever the limits say: they were made. One statement, no lock of the head."""
    if not _TOKEN_ID.match(token_id):
        raise ValueError("token_id must be 8 to 64 lower-case hex digits (a hash, not a token)")
    if n <= 0:
        return
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO api_calls (token_id, bucket, calls)"
            " VALUES (%s, floor(unix_timestamp(now(6))), %s)"
            " ON DUPLICATE KEY UPDATE calls = calls + %s",
            (token_id, int(n), int(n)),
        )


def used(conn: Any, token_id: str) -> tuple[int, int]:
    """The token's calls counted in the last minute and hour (the windows `reserve` sums)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT coalesce(sum(IF(bucket >= floor(unix_timestamp(now(6))) - %s, calls, 0)), 0),"
            " coalesce(sum(calls), 0) FROM api_calls"
            " WHERE token_id = %s AND bucket >= floor(unix_timestamp(now(6))) - %s",
            (MINUTE_BUCKETS, token_id, HOUR_BUCKETS),
        )
        minute, hour = cur.fetchone()
    return int(minute), int(hour)
