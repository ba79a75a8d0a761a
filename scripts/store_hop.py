"""Where a search's time goes through the store host (``serve --workers N``), against the same
search in the process: the hop to the host, attributed, and an A/B of two host links.

    python scripts/store_hop.py DATA_DIR [--fill N] [--queries 600] [--scope tenant|lead]
        [--baseline OTHER_TREE/retrieval/shared_store.py]

``DATA_DIR`` holds ``a/`` (and ``b/``, ``c/``: byte copies, as Edge locks a shard for one
opener) filled by ``--fill N`` (the bench's own fill: ``benchmarks.notes_fill.build_store``, one
tenant, random unit vectors, demo note texts). Each query (the bench's 64 note texts, embedded
once with the bench's MiniLM) goes through every row in turn, so load changes hit every row
alike:

* ``engine``: the ``_search`` operation called on this thread, engine in this process (``b``);
* ``in-process``: ``NotesStore.search_many_timed`` on a ``ThreadRunner`` (``b``);
* ``host``: the same through this tree's ``StoreHost``/``SharedRunner`` (``a``), and
  ``host engine``: the engine's own time for it, taken inside the host;
* ``host no-op``: an operation that does nothing, through the same link (the hop alone);
* ``baseline host``, ``baseline engine``, ``baseline no-op`` (with ``--baseline``): the same
  through another tree's ``shared_store.py`` (e.g. main's, from ``git archive``), its host on
  ``c``.

Then each search's legs through each runner (interleaved per query): out to the engine's side,
the operation there, and back, read on one clock. And, apart (not interleaved): the pickled
sizes and pickle/unpickle time of one search's request and result, and the round trip of a bare
``multiprocessing.connection`` pair (a child process that echoes bytes), the floor of any
socket hop between two processes.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import multiprocessing
import operator
import pickle
import shutil
import sys
import tempfile
import time
from multiprocessing.connection import Client, Listener
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from benchmarks.notes_fill import TENANT, build_store
from benchmarks.notes_search_suite import TOP_K, query_texts
from retrieval import shared_store
from retrieval.config import StoreConfig
from retrieval.embedder import MINILM_DIM, MINILM_DQ_NAME, OnnxEmbedder
from retrieval.store import NoteQuery, NotesStore, _search, _spec, runner_for


def _pct(values: list[float]) -> str:
    ms = np.array(values) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return f"{p50:7.3f} {p90:7.3f} {p99:7.3f}  (n={len(values)})"


def _echo(address: str, key: bytes) -> None:
    with Listener(address, authkey=key) as listener, listener.accept() as conn:
        while True:
            try:
                conn.send_bytes(conn.recv_bytes())
            except EOFError:
                return


def socket_floor(n: int, size: int) -> list[float]:
    """Round trips of ``size`` bytes to an echoing child process over a Unix socket."""
    with tempfile.TemporaryDirectory() as tmp:
        address = str(Path(tmp) / "echo.sock")
        key = b"k" * 32
        child = multiprocessing.get_context("spawn").Process(target=_echo, args=(address, key))
        child.start()
        for _ in range(100):
            if Path(address).exists():
                break
            time.sleep(0.05)
        times = []
        with Client(address, authkey=key) as conn:
            payload = b"x" * size
            for _ in range(n):
                started = time.perf_counter()
                conn.send_bytes(payload)
                conn.recv_bytes()
                times.append(time.perf_counter() - started)
        child.join(5)
    return times


def pickle_costs(specs: list[Any], result: Any, n: int = 2000) -> None:
    request = pickle.dumps((_search, (specs,)), pickle.HIGHEST_PROTOCOL)
    answer = pickle.dumps(result, pickle.HIGHEST_PROTOCOL)
    for name, obj, data in (("request", (_search, (specs,)), request), ("result", result, answer)):
        started = time.perf_counter()
        for _ in range(n):
            pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))
        each = (time.perf_counter() - started) / n
        print(f"  {name}: {len(data):6d} bytes pickled, dumps+loads {each * 1e6:6.1f} us")
    hits = result[0][0]
    if hits:
        print(f"  one hit's payload keys: {sorted(hits[0][0])}")


def load_baseline(path: Path) -> ModuleType:
    """Another tree's shared_store.py as module ``shared_store_baseline`` (importable by the
    host process it spawns: spawn hands the child this sys.path)."""
    folder = Path(tempfile.mkdtemp(prefix="store-hop-baseline-"))
    shutil.copy(path, folder / "shared_store_baseline.py")
    sys.path.insert(0, str(folder))
    return importlib.import_module("shared_store_baseline")


async def shared_store_on(module: ModuleType, data: Path) -> tuple[Any, NotesStore]:
    host = module.StoreHost.start(StoreConfig(data))
    runner = module.SharedRunner(host.link)
    store = await NotesStore.open_with(runner, dim=MINILM_DIM, embedder_name=MINILM_DQ_NAME)
    return host, store


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--fill", type=int, default=0, help="fill DATA/a with N notes first")
    parser.add_argument("--queries", type=int, default=600)
    parser.add_argument("--scope", choices=("tenant", "lead"), default="tenant")
    parser.add_argument("--baseline", type=Path, help="another tree's retrieval/shared_store.py")
    parser.add_argument("--no-in-process", action="store_true", help="skip engine/in-process")
    args = parser.parse_args()

    a, b, c = (args.data / x for x in "abc")
    if args.fill:
        print(f"filling {a} with {args.fill:,} notes ...", flush=True)
        print(f"  {await build_store(a, args.fill):.1f} s")
    for copy in (b, c):
        if not copy.exists():
            shutil.copytree(a, copy)

    texts = query_texts("note")
    embedder = OnnxEmbedder(name=MINILM_DQ_NAME)
    vectors = [list(map(float, v)) for v in embedder.embed_sync(texts)]
    await embedder.close()
    queries = [
        NoteQuery(v, t, f"lead-{i % 1000:04d}" if args.scope == "lead" else None, top_k=TOP_K)
        for i, (v, t) in enumerate(zip(vectors, texts, strict=True))
    ]

    rows: dict[str, list[float]] = {}
    calls: list[tuple[str, Any]] = []
    host, shared = await shared_store_on(shared_store, a)
    local: NotesStore | None = None
    if not args.no_in_process:
        local = await NotesStore.open_with(
            runner_for(StoreConfig(b)), dim=MINILM_DIM, embedder_name=MINILM_DQ_NAME
        )
        backend = local._runner._backend  # type: ignore[attr-defined]
        calls.append(("engine", lambda q: _engine(backend, q)))
        calls.append(("in-process", lambda q: _timed(local, q)))
    calls.append(("host", lambda q: _timed(shared, q, rows)))
    calls.append(("host no-op", lambda q: _noop(shared)))
    baseline_host = None
    if args.baseline:
        module = load_baseline(args.baseline)
        baseline_host, baseline = await shared_store_on(module, c)
        calls.append(("baseline host", lambda q: _timed(baseline, q, rows, "baseline")))
        calls.append(("baseline no-op", lambda q: _noop(baseline)))

    try:
        for i in range(args.queries + 20):
            q = queries[i % len(queries)]
            # Rotate the order every query: no row always runs first (or right after another).
            for k in range(len(calls)):
                name, call = calls[(i + k) % len(calls)]
                started = time.perf_counter()
                await call(q)
                if i >= 20:  # warm-up
                    rows.setdefault(name, []).append(time.perf_counter() - started)
        print(f"\n{args.queries} queries a row, scope {args.scope}, interleaved; ms p50 p90 p99")
        for name in [n for n, _ in calls[:2]] + ["host", "host engine", "host no-op"]:
            if name in rows:
                print(f"  {name:18s} {_pct(rows[name][-args.queries :])}")
        for name in ("baseline host", "baseline engine", "baseline no-op"):
            if name in rows:
                print(f"  {name:18s} {_pct(rows[name][-args.queries :])}")

        legs_of = [("host", shared)]
        if local is not None:
            legs_of.insert(0, ("in-process", local))
        if baseline_host is not None:
            legs_of.append(("baseline host", baseline))
        await print_legs(legs_of, queries, args.queries)

        print("\npickled, one search (tenant scope)")
        specs = [(_spec(TENANT, queries[0]), TOP_K)]
        result = await shared._run(_search, specs)
        pickle_costs(specs, result)
    finally:
        await shared.close()
        host.stop()
        if local is not None:
            await local.close()
        if baseline_host is not None:
            await baseline.close()
            baseline_host.stop()

    print("\nbare multiprocessing.connection round trip to an echoing child, ms p50 p90 p99")
    for size in (64, 4096):
        print(f"  {size:5d} bytes {_pct(socket_floor(2000, size)[200:])}")


def _legged_search(backend: Any, specs: Any, sent: float) -> tuple[Any, float, float, float]:
    """``_search`` where the engine lives, with the clock read as it starts and ends
    (``perf_counter`` is CLOCK_MONOTONIC: one clock for every process of the machine)."""
    started = time.perf_counter()
    found = _search(backend, specs)
    return found, sent, started, time.perf_counter()


async def print_legs(stores: list[tuple[str, NotesStore]], queries: list[Any], n: int) -> None:
    """Each search's legs, the runners interleaved per query: out (the caller's call until the
    operation starts where the engine lives: pickling, socket or queue, wake-ups), the
    operation (engine and building the hits), back (until the caller has the answer)."""
    legs: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in stores}
    for i in range(n + 20):
        q = queries[i % len(queries)]
        specs = [(_spec(TENANT, q), q.top_k)]
        for k in range(len(stores)):
            name, store = stores[(i + k) % len(stores)]
            _, sent, started, ended = await store._run(_legged_search, specs, time.perf_counter())
            back = time.perf_counter()
            if i >= 20:
                legs[name].append((started - sent, ended - started, back - ended))
    print(f"\nlegs of one search ({n} a runner, interleaved), ms p50 / p90 / p99")
    print(f"  {'':16s} {'out':>23s} {'operation':>23s} {'back':>23s}")
    for name, rows in legs.items():
        cells = []
        for leg in zip(*rows, strict=True):
            p50, p90, p99 = np.percentile(np.array(leg) * 1e3, [50, 90, 99])
            cells.append(f"{p50:6.3f} /{p90:6.3f} /{p99:6.3f}")
        print(f"  {name:16s} " + " ".join(f"{c:>23s}" for c in cells))


async def _engine(backend: Any, q: NoteQuery) -> None:
    _search(backend, [(_spec(TENANT, q), q.top_k)])


async def _timed(
    store: NotesStore,
    q: NoteQuery,
    rows: dict[str, list[float]] | None = None,
    prefix: str = "host",
) -> None:
    found, engine_s = await store.search_many_timed(TENANT, [q])
    assert found[0], "no hit: is DATA filled?"
    if rows is not None:
        rows.setdefault(f"{prefix} engine", []).append(engine_s)


async def _noop(store: NotesStore) -> None:
    await store._run(operator.truth)


if __name__ == "__main__":
    asyncio.run(main())
