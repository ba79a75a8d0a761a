"""guard_embed_priority: the summary guard's embedding thread in a real gateway process runs at
the priority asked (read back from /proc), and bad values are refused before it starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import Settings
from tests.conftest import start_gateway_process


def _threads_by_policy(pid: int) -> dict[int, int]:
    """How many of the process's threads run under each scheduling policy (/proc stat 41)."""
    counts: dict[int, int] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as stat:
            policy = int(stat.read().rsplit(") ", 1)[1].split()[38])
        counts[policy] = counts.get(policy, 0) + 1
    return counts


@pytest.mark.parametrize(("priority", "idle_threads"), [(None, 0), ("idle", 1), ("normal", 0)])
def test_the_guards_embedding_thread_runs_at_the_priority_asked(
    tmp_path: Path, priority: str | None, idle_threads: int
) -> None:
    env = {} if priority is None else {"LEADGW_GUARD_EMBED_PRIORITY": priority}
    gateway = start_gateway_process(tmp_path, env=env)
    try:
        # Ready means the guard's model was warmed: its thread exists. One: the tokenizer's
        # threads must not inherit the policy (they are every caller's, not the guard's).
        assert _threads_by_policy(gateway.process.pid).get(os.SCHED_IDLE, 0) == idle_threads
    finally:
        assert gateway.stop() == 0


def test_a_bad_priority_is_refused_with_the_accepted_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADGW_GUARD_EMBED_PRIORITY", "lowest")
    with pytest.raises(ValidationError, match="expected 'normal', 'idle'"):
        Settings()
    monkeypatch.setenv("LEADGW_GUARD_EMBED_PRIORITY", "25")
    with pytest.raises(ValidationError, match="nice increment from 1 to 19"):
        Settings()
    monkeypatch.setenv("LEADGW_GUARD_EMBED_PRIORITY", "10")
    assert Settings().guard_embed_priority == 10
