"""The watcher's fleet-wide lease (SPEC §10, design/fleet.md §2.3 and §3): one watcher per app
across every machine of the fleet, on top of the local `AppLock` (one per machine).

`AppLease.take` takes the app's lease in the shared log (`tracker.log.mysql_lease`) and sets the
fence on the watcher's log, so that each of its appends is refused once another watcher has
taken the app over. A daemon thread, on connections of its own, renews the lease every TTL/3
and pulls the shared log (the holder sees the other machines' pushes of its app). When a
renewal finds the lease another's, or an append is refused (`LeaseLostError`), the watcher
stops: `check` raises, and the fence on the log refuses anything it still appends.

With the shared log unreachable when it starts, the watcher runs degraded: it watches with no
fence (its appends wait in the outbox, never refused) and each renewal tries to take the lease
again; finding another machine's then, it stops. A holder whose renewals cannot get through
keeps its fence: if nobody took over meanwhile its tenure goes on, else its waiting appends are
refused when they reach the shared log and it stops.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from tracker.errors import LeaseLostError, LogError, TrackerError
from tracker.log.base import Fence, Lease
from tracker.procs import host

if TYPE_CHECKING:
    from tracker.log.fleet import FleetLog
    from tracker.log.mysql_lease import LeaseLink

RENEWALS_PER_TTL = 3


def lease_key(platform: str, app: str) -> str:
    """The lease's key in the shared log: `platform:app_id`."""
    return f"{platform}:{app}"


class AppLease:
    """The fleet lease of one app for this watcher process (holder `machine:pid`)."""

    def __init__(self, log: FleetLog, app: str, *, ttl: float) -> None:
        from tracker.log.mysql_lease import LeaseLink

        self.log, self.app, self.ttl = log, app, ttl
        self.every = ttl / RENEWALS_PER_TTL
        self.holder = f"{log.machine}:{os.getpid()}"
        self.lost: LeaseLostError | None = None
        self.degraded: str | None = None  # why no lease is held: the shared log unreachable
        # A server slow to answer is not taken for an unreachable one (that would mean watching
        # degraded, beside the lease's holder) unless it stays silent for seconds.
        patience = max(self.every, 5.0)
        self._link: LeaseLink = LeaseLink(log.shared.settings, timeout=patience)
        self._side = log.twin(patience)  # the renewal thread's own connections
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def fence(self) -> Fence | None:
        return self.log.fence

    def take(self) -> Lease | None:
        """Take the lease and fence the log with it: None when this watcher may watch (the
        lease is its own, or the shared log is unreachable: degraded); else the other
        holder's unexpired lease."""
        found = self._try(lambda: self._link.take(self.app, self.holder, host(), os.getpid(),
                                                   self.ttl))  # fmt: skip
        if found is None or found.holder == self.holder:
            return None
        return found

    def _try(self, ask: Callable[[], Lease | None]) -> Lease | None:
        """Ask the shared log (take or renew) and take in what it says: our lease held, or
        another's (lost, once we held or wanted it); None when it could not be asked."""
        try:
            found = ask()
        except LogError as exc:
            self.degraded = str(exc)
            return None
        if found is None:  # a renewal that found no row at all: take it again next time
            self.log.fence = None
            return None
        with contextlib.suppress(LogError):
            self._side.note_lease(found)  # readers here know at once
        if found.holder == self.holder:
            self.degraded = None
            self.log.fence = found.fence_of()
        return found

    def start(self) -> None:
        """Renew every TTL/3 from a daemon thread until `release` (or the lease is lost)."""
        self._thread = threading.Thread(target=self._renewing, name="tracker-lease", daemon=True)
        self._thread.start()

    def _renewing(self) -> None:
        while not self._stop.wait(self.every):
            self.renew()
            if self.lost is not None:
                return
            with contextlib.suppress(Exception):  # a failed pull is noted in sync_state
                self._side.pull()

    def renew(self) -> None:
        """One renewal (a take while degraded): finding the lease another's, the watcher has
        lost it: the log is fenced so that nothing more of ours is stored, and `check` raises."""
        fence = self.log.fence
        if fence is None:
            found = self._try(lambda: self._link.take(self.app, self.holder, host(), os.getpid(),
                                                       self.ttl))  # fmt: skip
        else:
            found = self._try(lambda: self._link.renew(self.app, self.holder, fence.fence,
                                                        self.ttl))  # fmt: skip
        if found is not None and found.holder != self.holder:
            self.lose(LeaseLostError(found.holder, found.fence))

    def lose(self, lost: LeaseLostError) -> None:
        """The lease is another's: fence whatever this watcher may still append (refused)."""
        self.lost = lost
        fence = self.log.fence
        self.log.fence = Fence(self.app, self.holder, fence.fence if fence else 0)

    def check(self) -> None:
        """Raise `LeaseLostError` once the lease is lost (the watcher calls it as it goes)."""
        if self.lost is not None:
            raise self.lost

    def other_holds(self) -> Lease | None:
        """Another watcher's unexpired lease of the app now; None when none (or the shared
        log cannot say: a follower then goes by the local lock alone)."""
        try:
            found = self._link.read(self.app)
        except LogError:
            return None
        if found is None or found.holder == self.holder or found.remaining_s < 0:
            return None
        return found

    def release(self) -> None:
        """Stop renewing, forward what waits (under the lease still), and let the lease expire
        now if it is still ours: the next watcher need not wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.every + 5.0)
        if self.lost is None:
            with contextlib.suppress(TrackerError):
                self.log.forward()
        fence = self.log.fence
        if fence is not None and self.lost is None:
            with contextlib.suppress(LogError):
                self._link.release(self.app, self.holder, fence.fence)
        self.log.fence = None
        self._link.close()
        self._side.close()
