"""A follower process for the fleet log's tests: `python tests/support/log_follower.py URL N OUT`.

Tails the log at URL the way a cache or `events --follow` does, `events(after_seq=last)` in a
loop, until it has seen N events; then writes one `seq key` line per event, in the order seen,
to OUT. It prints `ready` once its log is open.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tracker.log import open_log


def main(url: str, wanted: int, out: Path) -> None:
    log = open_log(url)
    seen: list[tuple[int, str]] = []
    log.last_seq()  # connected before saying so
    print("ready", flush=True)
    last = 0
    while len(seen) < wanted:
        found = log.events(after_seq=last, limit=200)
        for stored in found:
            seen.append((stored.seq, stored.key or "-"))
            last = stored.seq
        if not found:
            time.sleep(0.005)  # a poll's pause, as `events --follow` makes (2 cores, 35 processes)
    out.write_text("".join(f"{seq} {key}\n" for seq, key in seen))
    log.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
