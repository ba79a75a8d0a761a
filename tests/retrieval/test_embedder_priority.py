"""Embedding threads run nicer than the process, so scoring gets the cores first (Linux)."""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from retrieval.embedder import EMBEDDER_NICE, OnnxEmbedder, lower_thread_priority

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")


def _nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_lower_thread_priority_adds_to_the_threads_own_nice() -> None:
    def probe() -> tuple[int, int] | None:
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, 2)  # below pytest's nice 19 needs privilege
        except PermissionError:
            return None
        lower_thread_priority(5)
        after = _nice_of_this_thread()
        lower_thread_priority(50)
        return after, _nice_of_this_thread()

    with ThreadPoolExecutor(1) as pool:
        found = pool.submit(probe).result()
    if found is None:
        pytest.skip("lowering a thread's nice value needs CAP_SYS_NICE here")
    assert found == (7, 19)  # relative to the thread's own value, capped at 19


async def test_the_embedders_thread_is_the_nicer_one(embedder: OnnxEmbedder) -> None:
    process = os.getpriority(os.PRIO_PROCESS, 0)
    await embedder.embed(["warm"])
    loop_thread = _nice_of_this_thread()
    inner = embedder._executor.submit(_nice_of_this_thread).result()  # type: ignore[attr-defined]
    assert loop_thread == process
    assert inner == min(19, process + EMBEDDER_NICE)
