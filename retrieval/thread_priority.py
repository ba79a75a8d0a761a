"""A background thread's CPU priority, set by the thread itself as it starts (Linux).

A gateway worker's event loop and the summary guard's embedding share a process and two cores
with everything else; the loop's requests are the latency that counts. Lowered here, the
embedding thread gives way to a waking loop thread instead of sharing the core with it:

- ``"idle"``: ``SCHED_IDLE``; the kernel runs the thread only when nothing else of normal
  priority wants the core, and a waking normal thread preempts it at once.
- an integer 1..19: that much nicer than the process (still time-shared, at a smaller weight).
- ``"normal"``: left as it is.

Linux lets any thread lower its own priority; where the call is missing or refused (another
OS, a seccomp policy) the thread keeps its priority and a warning says so.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Literal

log = logging.getLogger(__name__)

ThreadPriority = Literal["normal", "idle"] | int
"""``"normal"``, ``"idle"`` (SCHED_IDLE) or a nice increment 1..19."""
NORMAL: ThreadPriority = "normal"
IDLE: ThreadPriority = "idle"
MAX_NICE = 19


def check_priority(value: object) -> ThreadPriority:
    """``value`` as a ThreadPriority; ValueError naming the accepted values otherwise."""
    if value in ("normal", "idle"):
        return value  # type: ignore[return-value]
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_NICE:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return check_priority(int(value.strip()))
    raise ValueError(
        f"thread priority {value!r}: expected 'normal', 'idle' (SCHED_IDLE) or a nice "
        f"increment from 1 to {MAX_NICE}"
    )


def lower_current_thread(priority: ThreadPriority, what: str) -> str:
    """Applies ``priority`` to the calling thread. Returns what took effect: ``"normal"``,
    ``"idle"`` or ``"nice N"`` (N the thread's nice value); ``"normal"`` with a warning logged
    when the OS refused. ``what`` names the thread in that warning."""
    priority = check_priority(priority)
    if priority == "normal":
        return "normal"
    try:
        if priority == "idle":
            # pid 0: the calling thread (Linux schedules threads, not processes).
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return "idle"
        tid = threading.get_native_id()
        nice = min(MAX_NICE, os.getpriority(os.PRIO_PROCESS, tid) + int(priority))
        os.setpriority(os.PRIO_PROCESS, tid, nice)
        return f"nice {nice}"
    except (AttributeError, OSError) as exc:  # no such call here, or not permitted
        log.warning(
            "%s: could not lower its priority to %s (%s); runs at normal", what, priority, exc
        )
        return "normal"


def lower_process_priority(increment: int) -> None:
    """Adds ``increment`` to the nice value of every thread of this process running now; the
    threads started after inherit it from the thread that starts them. For the processes that
    serve only notes and summaries (the summaries process, the store host): a worker's scoring
    then gets the CPU first. Raising a nice value needs no privilege."""
    if increment <= 0:
        return
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # no /proc: this thread, and the threads it starts
        threads = [0]
    for tid in threads:
        try:
            now = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(now + increment, MAX_NICE))
        except ProcessLookupError:  # a thread that ended since the listing
            continue
        except OSError as exc:
            log.warning("could not lower this process's CPU priority: %s", exc)
            return
