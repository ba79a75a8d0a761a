"""The supervisor's restarts of a summaries process that dies (``_join_workers``), on stand-in
processes and a clock that polling moves forward: no process is started and no time passes."""

from __future__ import annotations

import math
import os
import re
from itertools import pairwise

import pytest

from gateway.workers import SUMMARIES_MAX_WAIT_S, SUMMARIES_RAN_LONG_S, _join_workers


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class StandIn:
    """A process that is alive from its creation until ``lives_s`` later on ``clock``; joining
    it moves the clock forward, as the supervisor's polling would take that long."""

    def __init__(self, clock: Clock, pid: int, lives_s: float = math.inf) -> None:
        self.clock, self.pid, self.dies_at = clock, pid, clock.now + lives_s

    def is_alive(self) -> bool:
        return self.clock.now < self.dies_at

    @property
    def exitcode(self) -> int | None:
        return None if self.is_alive() else 1

    def join(self, timeout: float | None = None) -> None:
        if self.is_alive():
            until = self.dies_at if timeout is None else self.clock.now + timeout
            assert until < math.inf, "would wait forever for a stand-in that never dies"
            self.clock.now = min(until, self.dies_at)


class Respawner:
    """``respawn`` for ``_join_workers``: each start records its time and lasts the next of
    ``lives_s`` (the last one for every start after)."""

    def __init__(self, clock: Clock, lives_s: list[float]) -> None:
        self.clock, self.lives_s, self.started_at = clock, lives_s, list[float]()

    def __call__(self) -> StandIn:
        lives = self.lives_s[min(len(self.started_at), len(self.lives_s) - 1)]
        self.started_at.append(self.clock.now)
        return StandIn(self.clock, 1000 + len(self.started_at), lives)


@pytest.fixture(autouse=True)
def no_signals(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The stand-ins' pids are made up: a SIGTERM to one must never reach a real process."""
    sent: list[int] = []
    monkeypatch.setattr(os, "kill", lambda pid, _signum: sent.append(pid))
    return sent


def _waits(stderr: str) -> list[float]:
    """The wait before each start that the supervisor announced: 0 for "at once"."""
    found = re.findall(r"; starting another(?: in ([\d.]+) s)? \(it ran for [\d.]+ s\)", stderr)
    return [float(wait or 0) for wait in found]


def test_a_replacement_that_dies_at_once_waits_longer_each_time_up_to_the_cap(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = Clock()
    respawn = Respawner(clock, [0.2])
    workers = [StandIn(clock, 1, lives_s=400)]
    _join_workers(
        workers,
        [StandIn(clock, 999, lives_s=0.2)],
        lambda: True,
        respawn,
        summaries_started_at=0.0,
        clock=clock,
    )
    expected = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, SUMMARIES_MAX_WAIT_S, SUMMARIES_MAX_WAIT_S]
    stderr = capsys.readouterr().err
    assert _waits(stderr)[: len(expected)] == expected
    assert "exited with code 1; starting another in 4 s (it ran for 0.5 s)" in stderr
    # Each death is seen at the next poll (0.5 s after a start), the next start a wait later.
    gaps = [later - earlier for earlier, later in pairwise(respawn.started_at)]
    assert gaps[: len(expected) - 1] == [0.5 + wait for wait in expected[1:]]
    assert len(respawn.started_at) < 12  # ~400 s of a crash loop: a dozen starts, not 800


def test_a_process_that_ran_long_is_replaced_at_once_and_resets_the_wait(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = Clock()
    # Dies at once, at once again, then runs long, then dies at once from there on.
    respawn = Respawner(clock, [0.2, SUMMARIES_RAN_LONG_S + 5, 0.2])
    workers = [StandIn(clock, 1, lives_s=100)]
    first = StandIn(clock, 999, lives_s=0.2)
    _join_workers(workers, [first], lambda: True, respawn, summaries_started_at=0.0, clock=clock)
    stderr = capsys.readouterr().err
    assert _waits(stderr)[:4] == [1.0, 2.0, 0.0, 1.0]
    assert "; starting another (it ran for 65.0 s)" in stderr
    # Deaths seen at 0.5, 2.0, 69.0 (the long run) and 69.5 s.
    assert respawn.started_at[:4] == [1.5, 4.0, 69.0, 70.5]


def test_workers_exiting_during_the_wait_end_the_join_without_another_start(
    no_signals: list[int],
) -> None:
    clock = Clock()
    respawn = Respawner(clock, [0.2])
    # Four quick starts; the fourth's death is seen at 17.5 s, the fifth start due 16 s later.
    workers = [StandIn(clock, 1, lives_s=25.0)]
    summarizing = [StandIn(clock, 999, lives_s=0.2)]
    _join_workers(
        workers, summarizing, lambda: True, respawn, summaries_started_at=0.0, clock=clock
    )
    assert len(respawn.started_at) == 4
    assert clock.now == 25.0  # it returned when the worker exited, not when the wait ended
    assert summarizing[0].pid == 1004 and no_signals == []  # the dead one, nothing to stop


def test_no_start_once_the_gateway_stops_serving_during_the_wait(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = Clock()
    respawn = Respawner(clock, [0.2])
    stopped_at = 1.0  # SIGTERM, 0.5 s into the 1 s wait after the first death
    workers = [StandIn(clock, 1, lives_s=10.0)]  # draining, then exiting
    _join_workers(
        workers,
        [StandIn(clock, 999, lives_s=0.2)],
        lambda: clock.now < stopped_at,
        respawn,
        summaries_started_at=0.0,
        clock=clock,
    )
    assert respawn.started_at == []
    assert clock.now == 10.0
    assert capsys.readouterr().err.count("starting another in 1 s") == 1
