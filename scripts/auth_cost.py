"""What authenticating one call costs, hot, in one process, with a keys file of N keys: the
``KeyStore.authenticate`` every call with a keys file runs (the caller's key is the last one
stored). Thread CPU time, the minimum over repetitions of the mean of N calls.

Run from the repository root::

    python scripts/auth_cost.py [--keys 3,100,1000] [--n 20000] [--reps 5]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.auth import Caller, KeyStore, hash_key  # noqa: E402


def cost_us(store: KeyStore, key: str, n: int, reps: int) -> float:
    metadata = (("authorization", f"Bearer {key}"), ("user-agent", "grpc-python"))
    for _ in range(500):
        store.authenticate(metadata)
    best = float("inf")
    for _ in range(reps):
        started = time.thread_time()
        for _ in range(n):
            store.authenticate(metadata)
        best = min(best, (time.thread_time() - started) / n * 1e6)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", default="3,100,1000", help="key counts, comma-separated")
    parser.add_argument("--n", type=int, default=20000, help="calls per repetition")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (the minimum is kept)")
    args = parser.parse_args()
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
        print(f"{count:6d} keys: {cost_us(store, keys[-1], args.n, args.reps):7.2f} µs a call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
