"""The embedding thread's CPU priority: set by the thread itself, read back from the OS."""

from __future__ import annotations

import logging
import os
import threading

import numpy as np
import pytest

from retrieval.embedder import OnnxEmbedder
from retrieval.thread_priority import check_priority, lower_current_thread


def _policy(tid: int) -> int:
    """The thread's scheduling policy as the kernel reports it (/proc stat field 41)."""
    with open(f"/proc/self/task/{tid}/stat") as stat:
        return int(stat.read().rsplit(") ", 1)[1].split()[38])


@pytest.mark.parametrize("bad", ["low", "", 0, 20, -3, True, 2.5, "nice 5"])
def test_values_other_than_normal_idle_or_a_nice_increment_are_refused_by_name(bad) -> None:
    with pytest.raises(ValueError, match=r"expected 'normal', 'idle' \(SCHED_IDLE\) or a nice"):
        check_priority(bad)


def test_the_accepted_values() -> None:
    assert [check_priority(v) for v in ("normal", "idle", 1, 19, "7")] == [
        "normal",
        "idle",
        1,
        19,
        7,
    ]


async def test_the_guards_thread_runs_sched_idle_and_shares_the_model(
    embedder: OnnxEmbedder,
) -> None:
    background = embedder.on_own_thread("idle")
    try:
        tid = await background.thread_native_id()
        assert tid != await embedder.thread_native_id()
        assert os.sched_getscheduler(tid) == os.SCHED_IDLE
        assert _policy(tid) == os.SCHED_IDLE
        # The first thread keeps its priority; the model is the same (same vectors, no copy).
        assert os.sched_getscheduler(await embedder.thread_native_id()) == os.SCHED_OTHER
        text = ["The client plans to retire in 2027."]
        np.testing.assert_array_equal(await background.embed(text), await embedder.embed(text))
        assert background._session is embedder._session
    finally:
        await background.close()
    # Closing the view stops its thread only.
    assert (await embedder.embed(["still serving"])).shape == (1, embedder.dim)


async def test_a_nice_increment_is_added_to_the_threads_nice(embedder: OnnxEmbedder) -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    background = embedder.on_own_thread(5)
    try:
        tid = await background.thread_native_id()
        assert os.getpriority(os.PRIO_PROCESS, tid) == min(19, base + 5)
        assert os.sched_getscheduler(tid) == os.SCHED_OTHER
    finally:
        await background.close()


def test_a_refusal_by_the_os_leaves_the_thread_normal_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    outcome: list[str] = []
    tids: list[int] = []

    def start() -> None:
        tids.append(threading.get_native_id())
        outcome.append(lower_current_thread("idle", "embedding thread"))

    with caplog.at_level(logging.WARNING, logger="retrieval.thread_priority"):
        thread = threading.Thread(target=start)
        thread.start()
        thread.join()
    assert outcome == ["normal"]
    assert "embedding thread: could not lower its priority to idle" in caplog.text
    assert "Operation not permitted" in caplog.text
