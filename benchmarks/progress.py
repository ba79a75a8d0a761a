"""A live display of each run (rich), or nothing when the output is not for a person."""

from __future__ import annotations

from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class ProgressSink(Protocol):
    def begin(self, label: str, total_s: float) -> None: ...

    def update(self, elapsed_s: float, completed: int, errors: int) -> None: ...

    def end(self) -> None: ...

    def note(self, message: str) -> None: ...


class NoProgress:
    """Prints nothing but notes, to stderr."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)

    def begin(self, label: str, total_s: float) -> None:
        return None

    def update(self, elapsed_s: float, completed: int, errors: int) -> None:
        return None

    def end(self) -> None:
        return None

    def note(self, message: str) -> None:
        self._console.print(message, markup=False, highlight=False, soft_wrap=True)


class RichProgress:
    """One bar per run over its planned time, with requests per second and errors so far."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[rate]:>9} req/s  {task.fields[errors]} errors"),
            console=self._console,
        )
        self._task: TaskID | None = None
        self._last = (0.0, 0)

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def begin(self, label: str, total_s: float) -> None:
        self._task = self._progress.add_task(label, total=total_s, rate="-", errors=0)
        self._last = (0.0, 0)

    def update(self, elapsed_s: float, completed: int, errors: int) -> None:
        if self._task is None:
            return
        then, done_then = self._last
        rate = (completed - done_then) / (elapsed_s - then) if elapsed_s - then > 0.5 else None
        if rate is None:
            self._progress.update(self._task, completed=elapsed_s, errors=errors)
            return
        self._last = (elapsed_s, completed)
        self._progress.update(self._task, completed=elapsed_s, errors=errors, rate=f"{rate:,.0f}")

    def end(self) -> None:
        if self._task is not None:
            total = self._progress.tasks[-1].total
            self._progress.update(self._task, completed=total)
        self._task = None

    def note(self, message: str) -> None:
        self._progress.console.print(message, markup=False, highlight=False, soft_wrap=True)
