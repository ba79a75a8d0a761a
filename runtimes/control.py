"""Model control: when the served versions and routing change, and how every worker agrees.

Modes (Triton's ``--model-control-mode``): ``none`` loads at start and never changes; ``poll``
watches the repository every ``poll_secs`` and applies new, changed and removed versions and
edited control tables; ``explicit`` changes only through control actions (the repository RPCs).

A control action never changes one process alone: workers share the port, so the RPC lands on
any one of them. The receiving worker writes the desired state into the model's ``config.toml``
(``[routing]``, with a new generation; atomically, under a lock file), applies it itself, then
waits until every worker's acknowledgement file shows that generation applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from runtimes.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidInput,
    NotFound,
)
from runtimes.model_config import (
    CONFIG_FILE,
    feature_signature,
    load_version_config,
    read_model_controls,
    replace_routing_table,
)
from runtimes.repository import ModelRepository, SyncReport
from runtimes.routing import RoutingPolicy, check_alias_name, check_shadow_rate, check_weight

log = logging.getLogger(__name__)
audit_log = logging.getLogger("leadgw.audit")

ControlMode = Literal["none", "poll", "explicit"]
LOCK_FILE = ".config.toml.lock"


@dataclass(frozen=True, slots=True)
class ControlConfig:
    mode: ControlMode = "none"
    poll_secs: float = 15.0
    worker_index: int = 0
    workers: int = 1
    ack_dir: Path | None = None
    """Where each worker records the generations it applied (shared by a gateway's workers)."""
    apply_timeout_s: float = 30.0
    """How long a control action waits for every worker to apply it."""
    traffic_window_s: float = 60.0
    """A model called within this window has traffic flowing."""


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """What a load does besides loading (leadgw's parameters of ``RepositoryModelLoad``)."""

    promote: bool = False
    rollback: bool = False
    canary_weight: float | None = None
    shadow: bool | None = None
    shadow_rate: float | None = None
    """The share of leads the shadow compares; alone, it changes the rate of the shadow on."""
    alias: str | None = None


@dataclass(frozen=True, slots=True)
class ControlAction:
    """One control action, for the audit log and the metric."""

    action: str
    model: str
    version: str
    caller: str
    outcome: str
    detail: str = ""
    generation: int = 0


@dataclass(slots=True)
class _Applied:
    generations: dict[str, int] = field(default_factory=dict)
    failed: dict[str, dict[str, str]] = field(default_factory=dict)


class ModelControl:
    """Applies control modes and actions to one process's repository."""

    def __init__(
        self,
        repository: ModelRepository,
        config: ControlConfig,
        on_action: Callable[[ControlAction], None] | None = None,
    ) -> None:
        self.repository = repository
        self.config = config
        self._on_action = on_action
        self._lock = asyncio.Lock()
        self._applied = _Applied()
        self._poller: asyncio.Task[None] | None = None

    # ---- applying ------------------------------------------------------------------------

    async def start(self, initial: SyncReport | None = None) -> None:
        """Records what start-up loaded and, unless the mode is none, starts watching."""
        if initial is not None:
            self._record(initial)
        await self._write_ack()
        if self.config.mode != "none":
            self._poller = asyncio.create_task(self._poll(), name="model-control-poll")

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_secs)
            try:
                await self.apply()
            except OSError as exc:  # the repository unreadable for a moment: try next time
                log.error("model control: cannot read the repository: %s", exc)

    async def apply(self) -> None:
        """One pass: in poll mode everything on disk, in explicit mode the models whose control
        generation moved (a control action on another worker)."""
        async with self._lock:
            if self.config.mode == "poll":
                report = await self.repository.sync()
            else:
                loop = asyncio.get_running_loop()
                generations = await loop.run_in_executor(None, self._disk_generations)
                moved = [m for m, g in generations.items() if self._applied.generations.get(m) != g]
                if not moved:
                    await self._write_ack()
                    return
                report = await self.repository.sync(moved)
            self._record(report)
            await self._write_ack()

    def _disk_generations(self) -> dict[str, int]:
        generations = {}
        for model_dir in self.repository.root.iterdir():
            if model_dir.is_dir() and not model_dir.name.startswith("."):
                with contextlib.suppress(ValueError):
                    generations[model_dir.name] = read_model_controls(model_dir)[1].generation
        return generations

    def _record(self, report: SyncReport) -> None:
        self._applied.generations.update(report.generations)
        for model, failed in report.failed.items():
            self._applied.failed[model] = dict(failed)
        for model in report.generations:
            if model not in report.failed:
                self._applied.failed.pop(model, None)

    async def _write_ack(self) -> None:
        if self.config.ack_dir is None:
            return
        now = time.monotonic()
        record = {
            "pid": os.getpid(),
            "written_at": time.time(),
            "generations": self._applied.generations,
            "failed": self._applied.failed,
            "idle_s": {
                name: (now - last) if last else None
                for name in self.repository.names()
                for last in [self.repository.last_call(name)]
            },
        }
        path = self.config.ack_dir / f"worker-{self.config.worker_index}.json"
        await asyncio.get_running_loop().run_in_executor(None, _write_atomically, path, record)

    # ---- control actions ------------------------------------------------------------------

    async def load(
        self, model: str, version: str | None, options: LoadOptions, caller: str = ""
    ) -> int:
        """Loads a model (or one version) and applies ``options``; returns the generation every
        worker applied. Raises NotFound, InvalidInput, FailedPrecondition, DeadlineExceeded."""
        action = _action_name(options)
        try:
            generation = await self._load(model, version, options)
        except (NotFound, InvalidInput, FailedPrecondition, DeadlineExceeded) as exc:
            self._audit(
                ControlAction(action, model, version or "", caller, exc.status, exc.message)
            )
            raise
        self._audit(ControlAction(action, model, version or "", caller, "OK", "", generation))
        return generation

    async def unload(self, model: str, version: str | None, force: bool, caller: str = "") -> int:
        """Unloads one version, or every version of a model. Refuses to leave a model with
        traffic without any version unless ``force``."""
        try:
            generation = await self._unload(model, version, force)
        except (NotFound, FailedPrecondition, DeadlineExceeded) as exc:
            self._audit(
                ControlAction("unload", model, version or "", caller, exc.status, exc.message)
            )
            raise
        self._audit(ControlAction("unload", model, version or "", caller, "OK", "", generation))
        return generation

    async def _load(self, model: str, version: str | None, options: LoadOptions) -> int:
        self._require_control()
        on_disk = await self._versions_on_disk(model)
        if version is not None and version not in on_disk:
            raise NotFound(
                f"model '{model}' has no version '{version}' in the repository "
                f"(found: {', '.join(sorted(on_disk, key=int)) or 'none'})"
            )
        routing = await self._routing(model)
        if options.rollback:
            return await self._change(model, _rollback(model, routing, self.repository))
        if options.canary_weight is not None:
            check_weight_input(options.canary_weight)
        if options.shadow_rate is not None:
            check_shadow_rate_input(options.shadow_rate)
            if options.shadow is None:
                return await self._change(model, _new_rate(model, routing, version, options))
        if options.alias is not None:
            try:
                check_alias_name(options.alias)
            except ValueError as exc:
                raise InvalidInput(str(exc)) from exc
        target = version
        if target is None and (options.promote or options.alias):
            target = routing.candidate
            if target is None:
                raise InvalidInput(f"model '{model}': name the version (no canary or shadow is on)")
        trial = options.shadow or (options.canary_weight or 0.0) > 0.0
        if target is None and trial:
            raise InvalidInput(f"model '{model}': name the version to shadow or canary")
        if target is not None and trial:
            await self._check_same_schema(model, target, on_disk)
        # First the version itself, so that routing never points at a version some worker lacks.
        if target is not None and target not in self.repository.versions(model):
            loaded = tuple(sorted({*routing.loaded, target}, key=int))
            unloaded = tuple(v for v in routing.unloaded if v != target)
            pinned: dict[str, Any] = {}
            if routing.live is None and (trial or options.alias):
                # A candidate is loaded to be tried, not to serve: the live version stays live
                # although the candidate's number is higher.
                pinned["live"] = self.repository.live_version(model)
            await self._change(model, routing.bumped(loaded=loaded, unloaded=unloaded, **pinned))
            routing = await self._routing(model)
        elif target is None and not (options.shadow is False or options.canary_weight == 0.0):
            # A plain load of the whole model: every version its policy selects, again.
            return await self._change(model, routing.bumped(unloaded=()))
        changes: dict[str, Any] = {}
        if options.promote and target is not None:
            live = self.repository.live_version(model)
            changes.update(live=target, previous=live if live != target else routing.previous)
            if routing.canary == target:
                changes.update(canary=None, canary_weight=0.0)
            if routing.shadow == target:
                changes.update(shadow=None, shadow_rate=1.0)
        if options.canary_weight is not None:
            if options.canary_weight == 0.0:
                changes.update(canary=None, canary_weight=0.0)
            else:
                changes.update(canary=target, canary_weight=options.canary_weight)
        if options.shadow is not None:
            rate = 1.0 if options.shadow_rate is None or not options.shadow else options.shadow_rate
            changes.update(shadow=target if options.shadow else None, shadow_rate=rate)
        if options.alias is not None and target is not None:
            changes.update(aliases={**routing.aliases, options.alias: target})
        if not changes:
            return routing.generation if target is not None else await self._change(model, routing)
        return await self._change(model, routing.bumped(**changes))

    async def _unload(self, model: str, version: str | None, force: bool) -> int:
        self._require_control()
        on_disk = await self._versions_on_disk(model)
        loaded = self.repository.versions(model)
        if version is not None and version not in on_disk and version not in loaded:
            raise NotFound(
                f"model '{model}' has no version '{version}' "
                f"(found: {', '.join(sorted(on_disk, key=int)) or 'none'})"
            )
        going = set(loaded) if version is None else {version}
        remaining = [v for v in loaded if v not in going]
        if not remaining and not force:
            idle = await self._idle_everywhere(model)
            if not idle:
                raise FailedPrecondition(
                    f"model '{model}': unloading {_which(version)} would leave no version while "
                    f"traffic flows (a call within {self.config.traffic_window_s:g} s); load "
                    "another version first, or force the unload"
                )
        routing = await self._routing(model)
        unloaded = tuple(sorted({*routing.unloaded, *going}, key=int))
        changes: dict[str, Any] = {
            "unloaded": unloaded,
            "loaded": tuple(v for v in routing.loaded if v not in going),
        }
        if routing.live in going:
            changes["live"] = None
        if routing.canary in going:
            changes.update(canary=None, canary_weight=0.0)
        if routing.shadow in going:
            changes.update(shadow=None, shadow_rate=1.0)
        return await self._change(model, routing.bumped(**changes))

    def _require_control(self) -> None:
        if self.config.mode == "none":
            raise FailedPrecondition(
                "model control is off (model_control_mode = none): start the gateway with "
                "model_control_mode poll or explicit to load, unload or route versions"
            )

    async def _versions_on_disk(self, model: str) -> list[str]:
        model_dir = self.repository.root / model
        if not (model_dir / CONFIG_FILE).is_file() and not model_dir.is_dir():
            known = ", ".join(p.name for p in sorted(self.repository.root.iterdir()) if p.is_dir())
            raise NotFound(f"model '{model}' is not in the repository (found: {known or 'none'})")

        def scan() -> list[str]:
            return [
                str(int(p.name))
                for p in model_dir.iterdir()
                if p.is_dir() and p.name.isdigit() and (p / "model.onnx").is_file()
            ]

        return await asyncio.get_running_loop().run_in_executor(None, scan)

    async def _routing(self, model: str) -> RoutingPolicy:
        loop = asyncio.get_running_loop()
        try:
            return (
                await loop.run_in_executor(None, read_model_controls, self.repository.root / model)
            )[1]
        except ValueError as exc:
            raise FailedPrecondition(f"model '{model}': {exc}") from exc

    async def _check_same_schema(self, model: str, version: str, on_disk: list[str]) -> None:
        live = self.repository.live_version(model)
        if live is None or live == version:
            return
        live_config = self.repository.get(model, live).config
        version_dir = self.repository.root / model / version
        loop = asyncio.get_running_loop()
        try:
            config = await loop.run_in_executor(
                None, load_version_config, version_dir.parent, version_dir
            )
        except (OSError, ValueError) as exc:
            raise FailedPrecondition(f"model '{model}' version {version}: {exc}") from exc
        if feature_signature(config) != feature_signature(live_config):
            ours = [s[0] for s in feature_signature(config)]
            theirs = [s[0] for s in feature_signature(live_config)]
            detail = _schema_difference(ours, theirs)
            raise InvalidInput(
                f"model '{model}' version {version} reads leads with another feature schema "
                f"than live version {live} ({detail}): it cannot be shadowed or canaried"
            )

    async def _change(self, model: str, routing: RoutingPolicy) -> int:
        """Writes ``routing`` (its generation one above what is on disk), applies it here, and
        waits until every worker applied it. Returns the generation."""
        loop = asyncio.get_running_loop()
        generation = await loop.run_in_executor(
            None, _write_routing, self.repository.root / model, routing
        )
        async with self._lock:
            report = await self.repository.sync([model])
            self._record(report)
            await self._write_ack()
        await self._wait_for_workers(model, generation)
        failed = self._failures_everywhere(model, routing)
        if failed:
            raise FailedPrecondition(f"model '{model}': {failed}")
        return generation

    async def _wait_for_workers(self, model: str, generation: int) -> None:
        if self.config.ack_dir is None or self.config.workers <= 1:
            return
        deadline = time.monotonic() + self.config.apply_timeout_s
        loop = asyncio.get_running_loop()
        while True:
            acks = await loop.run_in_executor(None, self._read_acks)
            behind = [
                i
                for i in range(self.config.workers)
                if acks.get(i, {}).get("generations", {}).get(model, -1) < generation
            ]
            if not behind:
                return
            if time.monotonic() >= deadline:
                done = [i for i in range(self.config.workers) if i not in behind]
                raise DeadlineExceeded(
                    f"model '{model}' generation {generation}: "
                    f"applied by workers {done or 'none'}, "
                    f"not by workers {behind} within {self.config.apply_timeout_s:g} s"
                )
            await asyncio.sleep(min(0.05, self.config.poll_secs / 4))

    def _read_acks(self) -> dict[int, dict[str, Any]]:
        acks: dict[int, dict[str, Any]] = {}
        if self.config.ack_dir is None:
            return acks
        for index in range(self.config.workers):
            path = self.config.ack_dir / f"worker-{index}.json"
            with contextlib.suppress(OSError, ValueError):
                acks[index] = json.loads(path.read_text())
        return acks

    def _failures_everywhere(self, model: str, routing: RoutingPolicy) -> str:
        """The requested versions that failed to load, on which worker, and why."""
        wanted = {*routing.loaded, routing.live, routing.canary, routing.shadow} - {None}
        acks = self._read_acks() if self.config.workers > 1 else {}
        acks[self.config.worker_index] = {"failed": self._applied.failed}
        problems = []
        for index, ack in sorted(acks.items()):
            for version, reason in ack.get("failed", {}).get(model, {}).items():
                if version in wanted:
                    problems.append(f"version {version} failed to load on worker {index}: {reason}")
        return "; ".join(problems)

    async def _idle_everywhere(self, model: str) -> bool:
        """No call on the model within the traffic window, here or (by their last
        acknowledgement) on the other workers."""
        window = self.config.traffic_window_s
        last = self.repository.last_call(model)
        if last and time.monotonic() - last < window:
            return False
        acks = await asyncio.get_running_loop().run_in_executor(None, self._read_acks)
        for index, ack in acks.items():
            if index == self.config.worker_index:
                continue
            idle = ack.get("idle_s", {}).get(model)
            if idle is not None and idle + (time.time() - ack.get("written_at", 0)) < window:
                return False
        return True

    def _audit(self, action: ControlAction) -> None:
        audit_log.info(
            "model control %s %s%s: %s%s",
            action.action,
            action.model,
            f" version {action.version}" if action.version else "",
            action.outcome,
            f" ({action.detail})" if action.detail else "",
            extra={
                "audit.action": action.action,
                "audit.model": action.model,
                "audit.version": action.version,
                "audit.caller": action.caller,
                "audit.outcome": action.outcome,
                "audit.generation": action.generation,
                "audit.worker": self.config.worker_index,
            },
        )
        if self._on_action is not None:
            self._on_action(action)


def _new_rate(
    model: str, routing: RoutingPolicy, version: str | None, options: LoadOptions
) -> RoutingPolicy:
    """A new sampling share for the shadow that is on (``shadow_rate`` sent alone)."""
    if routing.shadow is None:
        raise InvalidInput(
            f"model '{model}': no shadow is on to set shadow_rate for; send shadow too"
        )
    if version is not None and version != routing.shadow:
        raise InvalidInput(
            f"model '{model}': version {version} is not the shadow (version {routing.shadow} is)"
        )
    return routing.bumped(shadow_rate=options.shadow_rate)


def check_shadow_rate_input(rate: float) -> None:
    try:
        check_shadow_rate(rate)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


def check_weight_input(weight: float) -> None:
    try:
        check_weight(weight)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


def _rollback(model: str, routing: RoutingPolicy, repository: ModelRepository) -> RoutingPolicy:
    previous = routing.previous
    if previous is None:
        raise FailedPrecondition(f"model '{model}' has no previous live version to roll back to")
    live = repository.live_version(model)
    return routing.bumped(
        live=previous,
        previous=live,
        canary=None,
        canary_weight=0.0,
        shadow=None,
        shadow_rate=1.0,
        loaded=tuple(sorted({*routing.loaded, previous}, key=int)),
        unloaded=tuple(v for v in routing.unloaded if v != previous),
    )


def _action_name(options: LoadOptions) -> str:
    if options.rollback:
        return "rollback"
    if options.promote:
        return "promote"
    if options.canary_weight is not None:
        return "canary"
    if options.shadow is not None or options.shadow_rate is not None:
        return "shadow"
    if options.alias is not None:
        return "alias"
    return "load"


def _which(version: str | None) -> str:
    return "every version" if version is None else f"version {version}"


def _schema_difference(ours: list[str], theirs: list[str]) -> str:
    extra = [n for n in ours if n not in theirs]
    missing = [n for n in theirs if n not in ours]
    if extra or missing:
        return f"features added {extra or 'none'}, removed {missing or 'none'}"
    return "same feature names, but their types, ranges, categories or order differ"


@contextlib.contextmanager
def _locked(model_dir: Path) -> Iterator[None]:
    with open(model_dir / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_routing(model_dir: Path, routing: RoutingPolicy) -> int:
    """Replaces the ``[routing]`` table of ``config.toml``; the generation is one above the
    file's (another worker may have written since ``routing`` was read). Blocking."""
    path = model_dir / CONFIG_FILE
    with _locked(model_dir):
        on_disk = read_model_controls(model_dir)[1]
        generation = max(on_disk.generation, routing.generation - 1) + 1
        text = replace_routing_table(path.read_text(), replace(routing, generation=generation))
        _write_text_atomically(path, text)
    return generation


def _write_text_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _write_atomically(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_text_atomically(path, json.dumps(record))
