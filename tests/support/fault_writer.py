"""A writer process for the fault-injection tests and bench: `python tests/support/fault_writer.py`.

Modes:
  acked DB WRITER
      append batches of 1 to 4 events to the log, keyed `a<WRITER>:<batch>:<i>/<size>`, and
      after each `append_all` has returned print the batch number on a line of its own (an
      acknowledgement: that batch is committed). Runs until killed.
  hold-lock DB
      hold the log's lock, print `held`, and keep it until standard input closes (a stuck
      process).
"""

from __future__ import annotations

import hashlib
import random
import sys

from tracker.events import DeploymentPolled, PushRecorded
from tracker.log.sqlite import Append, SQLiteLog


def sha_of(n: int) -> str:
    return hashlib.sha1(f"fault-{n}".encode()).hexdigest()


def batch_of(writer: int, batch: int, rng: random.Random) -> list[Append]:
    """The batch-th batch of a writer: a push on a fresh stream, or polls of an older one."""
    size = rng.randint(1, 4)
    items = []
    for i in range(size):
        stream = sha_of(writer * 1_000_000 + rng.randint(0, 5))
        event = (
            PushRecorded(sha=stream, branch="main", source="api", push_id=f"a{writer}")
            if i == 0 and batch % 5 == 0
            else DeploymentPolled(source="digitalocean", ok=True, found=True, api_calls=1)
        )
        items.append(Append(stream, event, key=f"a{writer}:{batch}:{i}/{size}"))
    return items


def run_acked(db: str, writer: str) -> None:
    w = int(writer)
    store = SQLiteLog(db)
    store.last_seq()
    rng = random.Random(w)
    print("ready", flush=True)
    batch = 0
    while True:
        store.append_all(batch_of(w, batch, rng))
        print(batch, flush=True)
        batch += 1


def run_hold_lock(db: str) -> None:
    store = SQLiteLog(db)
    store.last_seq()
    with store.locked():
        print("held", flush=True)
        sys.stdin.read()


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "acked":
        run_acked(args[0], args[1])
    elif mode == "hold-lock":
        run_hold_lock(args[0])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
