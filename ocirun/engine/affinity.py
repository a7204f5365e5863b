"""Keep the tracer and its tracees on one CPU while that is faster.

Measured on these VMs: a stop whose tracer and tracee sit on different CPUs
costs a cross-CPU wake-up each way (~85 us per trapped syscall with -r /);
on the same CPU it is a plain context switch (~35 us). So the tracer pins
itself (and the first guest process, which inherits it) to its current CPU.
A guest that wants several CPUs must not pay for that: a monitor thread
samples the tracees' CPU time and, as soon as two of them compete for the
CPU or one is busy while the tracer is nearly idle (a CPU-bound guest gains
nothing from the pin and must be free to leave a CPU that other work
shares), releases every tracee (and the tracer) to all allowed CPUs for good.

The first looks come sooner (EARLY): a CPU-bound guest whose pinned CPU is also
wanted by another task waits on its run queue while the other CPU may be free, so
a busy tracee that waited for a good part of a window while the tracer was nearly
idle is released at once (a whole second interval of it cost a CPU-bound run up to
a tenth of a second). The samples are the scheduler's nanosecond counters
(/proc/PID/schedstat: time on a CPU, time waiting for one), with /proc/PID/stat's
clock ticks where the kernel has no schedstat.

OCIRUN_PIN=0 turns pinning off. The monitor is a bare `_thread` (no `threading`
import, and start() does not wait for the new thread to run: the guest is starting
on the same CPU).
"""

from __future__ import annotations

import _thread
import os
import time
from collections.abc import Callable, Iterator

INTERVAL = 0.1  # seconds between samples
EARLY = (0.025, 0.025)  # the first intervals (then INTERVAL)
BUSY = 0.3  # share of one CPU a task must use in an interval to count as competing
QUIET = 0.15  # a tracer using less than this while a tracee is busy: the guest is CPU-bound
WAITING = 0.25  # share of an early interval a busy tracee spent waiting for its CPU


def _sched_ns(pid: int) -> tuple[int, int]:
    """(ns on a CPU, ns waiting on a run queue) of thread `pid`; (-1, -1) when it is gone."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as f:
            ran, waited = f.read().split()[:2]
        return int(ran), int(waited)
    except FileNotFoundError:  # gone, or no schedstat in this kernel: /proc/PID/stat's ticks
        ticks = _cpu_ticks(pid)
        return (ticks * _NS_PER_TICK, 0) if ticks >= 0 else (-1, -1)
    except (OSError, ValueError):
        return -1, -1


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return -1
    fields = data[data.rfind(b")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


_NS_PER_TICK = 10**9 // os.sysconf("SC_CLK_TCK")


def _intervals() -> Iterator[tuple[float, bool]]:
    """(seconds to the next look, whether it is an early one), for ever."""
    for interval in EARLY:
        yield interval, True
    while True:
        yield INTERVAL, False


def _current_cpu() -> int:
    with open("/proc/self/stat", "rb") as f:
        data = f.read()
    return int(data[data.rfind(b")") + 2:].split()[36])


class CpuPinning:
    def __init__(self) -> None:
        self.allowed = os.sched_getaffinity(0)
        self.enabled = os.environ.get("OCIRUN_PIN", "1") != "0" and len(self.allowed) > 1
        self.released = not self.enabled
        self._stop = _thread.allocate_lock()  # held until stop(): the monitor sleeps on it
        self._stop.acquire()
        self._done: _thread.LockType | None = None  # held while the monitor runs
        self.on_release: Callable[[], None] | None = None  # told first (the fast path's forks)

    def pin(self) -> None:
        """Pin the tracer (before fork: the first guest process inherits it)."""
        if not self.enabled:
            return
        try:
            cpu = _current_cpu()
            if cpu not in self.allowed:
                cpu = min(self.allowed)
            os.sched_setaffinity(0, {cpu})
        except (OSError, ValueError, IndexError):
            self.released = True

    def start(self, pids: Callable[[], list[int]]) -> None:
        if self.released:
            return
        self._done = _thread.allocate_lock()
        self._done.acquire()
        _thread.start_new_thread(self._run, (pids,))

    def _run(self, pids: Callable[[], list[int]]) -> None:
        try:
            self._monitor(pids)
        finally:
            self._done.release()

    def _monitor(self, pids: Callable[[], list[int]]) -> None:
        me = os.getpid()  # the tracer's main thread: the loop runs there
        last = {pid: _sched_ns(pid) for pid in pids()}
        last_me = _sched_ns(me)[0]
        start = time.monotonic()
        for interval, early in _intervals():
            if self._stop.acquire(timeout=interval):
                return
            now_t = time.monotonic()
            window, start = (now_t - start) * 1e9, now_t
            now: dict[int, tuple[int, int]] = {}
            busy = waiting = 0
            for pid in pids():
                ran, waited = now[pid] = _sched_ns(pid)
                if ran >= 0 and last.get(pid, (-1, 0))[0] >= 0 and ran - last[pid][0] >= BUSY * window:
                    busy += 1
                    waiting += waited - last[pid][1] >= WAITING * window
            last = now
            mine = _sched_ns(me)[0]
            tracer_used, last_me = mine - last_me, mine
            # two guest tasks compete, or one is busy while the tracer is not (CPU-bound:
            # a syscall-bound guest keeps the tracer at least as busy as itself); in the
            # early looks, only a CPU-bound guest that is kept waiting for its CPU
            cpu_bound = busy == 1 and tracer_used < QUIET * window
            if busy >= 2 or (cpu_bound and (waiting or not early)):
                self.release(pids)
                return

    def release(self, pids: Callable[[], list[int]]) -> None:
        """Every tracee and the tracer back on all allowed CPUs. The tracees are listed
        after `released` is set: a child forked from then on is unpinned by the tracer."""
        self.released = True
        if self.on_release is not None:
            self.on_release()
        for pid in pids():
            self.unpin(pid)
        try:  # every thread of the tracer (sched_setaffinity(0) is the calling thread only)
            tids = [int(t) for t in os.listdir("/proc/self/task")]
        except OSError:
            tids = [os.getpid()]
        for tid in tids:
            self.unpin(tid)

    def unpin(self, pid: int) -> None:
        try:
            os.sched_setaffinity(pid, self.allowed)
        except OSError:
            pass

    def wake(self) -> None:
        """Tell the monitor to end (stop() waits for it)."""
        if self._stop.locked():
            self._stop.release()

    def stop(self) -> None:
        self.wake()
        if self._done is not None and self._done.acquire(timeout=1):
            self._done.release()
        if self.enabled and not self.released:  # (release() unpinned every thread already)
            try:
                os.sched_setaffinity(0, self.allowed)
            except OSError:
                pass
