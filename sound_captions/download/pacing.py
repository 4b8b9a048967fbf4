"""Politeness: attempt starts to one host spaced apart, per process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sound_captions.sources.requests import Seconds


class HostPacer:
    """Spaces attempt starts to each host at least ``min_interval_s`` apart (thread-safe).

    Slots are handed out under a lock, the waiting happens outside it, so callers queue fairly.
    One pacer per process (see :func:`host_pacer`): Ray workers do not coordinate, so the global
    rate to a host is up to ``n_workers / min_interval_s`` starts per second.
    """

    def __init__(self, min_interval_s: Seconds, *, clock: Callable[[], float] = time.monotonic):
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, host: str, sleep: Callable[[float], None] = time.sleep) -> Seconds:
        """Block until *host* may be contacted; returns the seconds waited."""
        if self.min_interval_s <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            slot = max(now, self._next.get(host, now))
            self._next[host] = slot + self.min_interval_s
        delay = slot - now
        if delay > 0:
            sleep(delay)
        return delay


_PACERS: dict[float, HostPacer] = {}
_PACERS_LOCK = threading.Lock()


def host_pacer(min_interval_s: Seconds) -> HostPacer:
    """The process-wide pacer for one interval (shared by all threads of a worker)."""
    with _PACERS_LOCK:
        pacer = _PACERS.get(min_interval_s)
        if pacer is None:
            pacer = _PACERS[min_interval_s] = HostPacer(min_interval_s)
        return pacer
