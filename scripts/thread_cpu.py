"""CPU time of every thread of some processes while a command runs (Linux, from ``/proc``).

Used to split a gateway worker's CPU per request into its event loop's thread, the conversion
thread, the batcher's thread and gRPC's own threads (``docs/perf/2026-11-28-cols2.md``)::

    python scripts/thread_cpu.py --pid <worker pid> [--requests N] -- leadgw bench ...

Threads started during the command are counted from zero; threads that end before it does are
not counted at all (their CPU leaves ``/proc`` with them). A thread's name is its ``comm``
(Python does not name OS threads, so most read "python"); the main thread's id is the pid.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def thread_ticks(pids: list[int]) -> dict[tuple[int, int, str], int]:
    """(pid, thread id, comm) → user + system CPU ticks so far."""
    ticks = {}
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    stat = f.read()
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    comm = f.read().strip()
            except OSError:  # the thread ended between listing and reading
                continue
            fields = stat.rsplit(")", 1)[1].split()
            ticks[(pid, int(tid), comm)] = int(fields[11]) + int(fields[12])
    return ticks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pid", type=int, action="append", required=True)
    parser.add_argument("--requests", type=float, default=0.0, help="divide by this count")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    before = thread_ticks(args.pid)
    code = subprocess.call(command) if command else 0
    after = thread_ticks(args.pid)
    unit = "ms per request" if args.requests else "ms"
    total = print_threads(before, after, args.requests or 1.0, unit)
    print(f"total {total:.3f} {unit}")
    return code


def print_threads(
    before: dict[tuple[int, int, str], int],
    after: dict[tuple[int, int, str], int],
    per: float,
    unit: str,
) -> float:
    """Prints each thread's CPU between two ``thread_ticks`` readings, busiest first, divided by
    ``per``; returns the total (ms, divided the same way)."""
    spent = sorted(
        ((n - before.get(key, 0), key) for key, n in after.items() if n > before.get(key, 0)),
        reverse=True,
    )
    for ticks, (pid, tid, comm) in spent:
        ms = ticks / TICKS_PER_S * 1000 / per
        print(f"pid {pid} thread {tid:>7} {comm:16s} {ms:9.3f} {unit}")
    return sum(ticks for ticks, _ in spent) / TICKS_PER_S * 1000 / per


if __name__ == "__main__":
    sys.exit(main())
