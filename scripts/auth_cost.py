"""What the auth decision of one call costs, hot, in one process: ``KeyStore.authenticate``
with a keys file of N keys (the caller's key the last one stored), and the audit log's line for
an allowed call (``AuditLog.allowed``, ``audit_log = "all"``, the default), written by leadgw's
logging configuration in JSON to ``/dev/null``. Thread CPU time, the minimum over repetitions of
the mean of N calls.

Run from the repository root; ``--tree DIR`` measures another source tree's code (a ``git
archive`` of another commit)::

    python scripts/auth_cost.py [--keys 3,100,1000] [--n 20000] [--reps 5] [--tree DIR]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cost_us(call: Callable[[], object], n: int, reps: int) -> float:
    for _ in range(500):
        call()
    best = float("inf")
    for _ in range(reps):
        started = time.thread_time()
        for _ in range(n):
            call()
        best = min(best, (time.thread_time() - started) / n * 1e6)
    return best


def audit_line_us(n: int, reps: int) -> float:
    import logging

    from gateway.audit import AuditLog
    from gateway.auth import Caller
    from gateway.telemetry import configure_logging

    with open(os.devnull, "w") as sink:
        handler = configure_logging("INFO", "json", sink)
        logging.getLogger().handlers[:] = [handler]  # leadgw's configuration alone
        audit = AuditLog(None, allowed_too=True)
        caller = Caller("acme", frozenset({"score"}), "acme-backend")
        method, peer = "/leadgw.v1.LeadService/ScoreLeads", "ipv4:10.0.0.7:53412"
        try:
            return cost_us(lambda: audit.allowed(caller, method, peer), n, reps)
        finally:
            logging.getLogger().removeHandler(handler)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", default="3,100,1000", help="key counts, comma-separated")
    parser.add_argument("--n", type=int, default=20000, help="calls per repetition")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (the minimum is kept)")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the source tree to measure")
    args = parser.parse_args()
    if not (args.tree / "gateway" / "auth.py").is_file():
        parser.error(f"--tree: {args.tree} holds no leadgw sources (gateway/auth.py)")
    sys.path.insert(0, str(args.tree))
    from gateway.auth import Caller, KeyStore, hash_key

    try:
        counts = [int(c) for c in args.keys.split(",")]
    except ValueError:
        parser.error(f"--keys: expected comma-separated counts, not {args.keys!r}")
    if any(c < 1 for c in counts):
        parser.error("--keys: every count must be at least 1")
    for count in counts:
        keys = [secrets.token_urlsafe(32) for _ in range(count)]
        store = KeyStore(
            (hash_key(key), Caller(f"tenant-{i}", frozenset({"score"}), f"key-{i}"))
            for i, key in enumerate(keys)
        )
        metadata = (("authorization", f"Bearer {keys[-1]}"), ("user-agent", "grpc-python"))
        us = cost_us(lambda: store.authenticate(metadata), args.n, args.reps)  # noqa: B023
        print(f"{count:6d} keys: {us:7.2f} µs a call")
    print(f"audit line (allowed, JSON): {audit_line_us(args.n, args.reps):7.2f} µs a call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
