"""The model repository: Triton's layout, versions loaded by policy, swapped while serving.

<root>/<model>/config.toml            per-model config (schema, bands, batching, ORT, and the
                                      [version_policy] and [routing] tables)
<root>/<model>/<version>/model.onnx   one folder per integer version
<root>/<model>/<version>/config.toml  optional: replaces the model's config for this version
                                      (all but the control tables, which it may not hold)

``sync`` makes the loaded versions match the folders and the control tables: a new or changed
version is loaded and warmed on a thread, then installed in one step on the event loop; a version
that is replaced or removed is unloaded after its last running call (``ServedModel.retire``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtimes.errors import NotFound, shown
from runtimes.model_config import (
    files_fingerprint,
    find_config,
    load_version_config,
    read_model_controls,
)
from runtimes.routing import RoutingPolicy, canary_share
from runtimes.served_model import ServedModel
from runtimes.session import OnnxSession
from runtimes.shadow import ShadowLane
from runtimes.version_policy import VersionPolicy

__all__ = ["ModelRepository", "ModelStatus", "ServedModel", "SyncReport"]

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"

ShadowLaneFactory = Callable[[ServedModel, ServedModel, float], ShadowLane]
"""(live, candidate, rate) → the lane that scores a copy of live's traffic on candidate."""


@dataclass(frozen=True, slots=True)
class ModelStatus:
    name: str
    version: str
    state: str  # READY | FAILED | UNAVAILABLE (unloaded)
    path: str
    reason: str = ""


@dataclass(slots=True)
class _Disk:
    """What one scan found for one model."""

    versions: dict[str, Path]
    policy: VersionPolicy
    routing: RoutingPolicy
    error: str = ""


@dataclass(slots=True)
class _Model:
    versions: dict[str, ServedModel] = field(default_factory=dict)
    routing: RoutingPolicy = field(default_factory=RoutingPolicy)
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    live: str | None = None
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)  # version → (fingerprint, why)
    on_disk: dict[str, Path] = field(default_factory=dict)
    shadow: ShadowLane | None = None


@dataclass(slots=True)
class SyncReport:
    """What one ``sync`` did, per model: for the control RPCs and the workers' acknowledgements."""

    generations: dict[str, int] = field(default_factory=dict)
    loaded: list[tuple[str, str]] = field(default_factory=list)
    unloaded: list[tuple[str, str]] = field(default_factory=list)
    failed: dict[str, dict[str, str]] = field(default_factory=dict)


class ModelRepository:
    """Serves the versions each model's policy selects; the live one by default."""

    def __init__(
        self,
        root: Path,
        *,
        make_batcher: Callable[[ServedModel], Any] | None = None,
        shadow_lane: ShadowLaneFactory | None = None,
    ) -> None:
        self.root = root
        self._make_batcher = make_batcher
        self._shadow_lane = shadow_lane
        self._models: dict[str, _Model] = {}

    # ---- loading -------------------------------------------------------------------------

    async def load(self, make_batcher: Callable[[ServedModel], Any] | None = None) -> SyncReport:
        """Loads what the repository holds at start (off the event loop)."""
        if make_batcher is not None:
            self._make_batcher = make_batcher
        return await self.sync()

    async def sync(self, models: Sequence[str] | None = None) -> SyncReport:
        """Makes the served versions match the folders and the control tables (of ``models``
        only, when given). Never raises for a broken version: it is reported and skipped."""
        loop = asyncio.get_running_loop()
        disk = await loop.run_in_executor(None, self._scan)
        report = SyncReport()
        names = sorted(set(disk) | set(self._models)) if models is None else list(models)
        for name in names:
            found = disk.get(name)
            if found is None:
                found = _Disk({}, VersionPolicy(), RoutingPolicy())
            await self._sync_model(name, found, report)
        return report

    def _scan(self) -> dict[str, _Disk]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"model repository {self.root} does not exist")
        found: dict[str, _Disk] = {}
        for model_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if model_dir.name.startswith("."):
                continue
            versions = {
                str(int(p.name)): p
                for p in model_dir.iterdir()
                if p.is_dir() and p.name.isdigit() and (p / MODEL_FILE).is_file()
            }
            try:
                policy, routing = read_model_controls(model_dir)
                found[model_dir.name] = _Disk(versions, policy, routing)
            except ValueError as exc:
                found[model_dir.name] = _Disk(versions, VersionPolicy(), RoutingPolicy(), str(exc))
        return found

    async def _sync_model(self, name: str, disk: _Disk, report: SyncReport) -> None:
        model = self._models.setdefault(name, _Model())
        if disk.error:
            # A broken control table keeps what serves now: log it, change nothing.
            log.error("model %s: %s; keeping the versions it serves", name, disk.error)
            report.failed.setdefault(name, {})["config"] = disk.error
            report.generations[name] = model.routing.generation
            return
        model.on_disk = dict(disk.versions)
        routing = disk.routing
        wanted = set(disk.policy.select(disk.versions))
        wanted |= {v for v in routing.loaded if v in disk.versions}
        wanted -= set(routing.unloaded)
        loop = asyncio.get_running_loop()
        staged: dict[str, ServedModel] = {}
        for version in sorted(wanted, key=int):
            path = disk.versions[version]
            fingerprint = await loop.run_in_executor(None, files_fingerprint, path, MODEL_FILE)
            current = model.versions.get(version)
            if current is not None and current.fingerprint == fingerprint:
                continue
            failed = model.failed.get(version)
            if failed is not None and failed[0] == fingerprint:
                report.failed.setdefault(name, {})[version] = failed[1]
                continue  # the same broken files: do not retry on every poll
            try:
                served = await loop.run_in_executor(None, self._load_version, name, version, path)
            except Exception as exc:  # any load error is the version's, reported, not raised
                log.error("model %s version %s failed to load: %s", name, version, exc)
                model.failed[version] = (fingerprint, str(exc))
                report.failed.setdefault(name, {})[version] = str(exc)
                continue
            served.fingerprint = fingerprint
            if self._make_batcher is not None:
                served.attach_batcher(self._make_batcher)
            model.failed.pop(version, None)
            staged[version] = served
        # From here to the end of the block nothing awaits: requests see the old set or the new.
        retired = [s for v, s in model.versions.items() if v not in wanted or v in staged]
        versions = {v: s for v, s in model.versions.items() if v in wanted and v not in staged}
        versions.update(staged)
        for version in set(model.failed) - wanted:
            model.failed.pop(version)
        model.versions = dict(sorted(versions.items(), key=lambda item: int(item[0])))
        model.routing = routing
        model.policy = disk.policy
        model.live = self._pick_live(name, model)
        stopped = self._hook_shadow(model)
        report.generations[name] = routing.generation
        report.loaded += [(name, v) for v in staged]
        report.unloaded += [(name, s.version) for s in retired if s.version not in staged]
        for version in staged:
            log.info("model %s version %s ready", name, version)
        if not model.versions and not model.failed and not disk.versions:
            self._models.pop(name, None)
        if stopped is not None:
            await stopped.close()
        await asyncio.gather(*(self._retire(s) for s in retired))

    async def _retire(self, served: ServedModel) -> None:
        await served.retire()
        log.info("model %s version %s unloaded", served.name, served.version)

    def _pick_live(self, name: str, model: _Model) -> str | None:
        if not model.versions:
            return None
        wanted = model.routing.live
        if wanted is not None and wanted in model.versions:
            return wanted
        if wanted is not None:
            log.warning("model %s: live version %s is not loaded; serving the latest", name, wanted)
        return max(model.versions, key=int)

    def _hook_shadow(self, model: _Model) -> ShadowLane | None:
        """Points the live version's copies at the shadow's lane; returns the lane it replaced,
        for the caller to close (after this step, which must not await)."""
        lane = model.shadow
        live = None if model.live is None else model.versions[model.live]
        shadow = model.routing.shadow
        candidate = None if shadow is None else model.versions.get(shadow)
        if self._shadow_lane is None or live is None or candidate in (None, live):
            candidate = None
        rate = model.routing.shadow_rate
        if lane is not None and lane.live is live and lane.candidate is candidate:
            lane.rate = rate  # the same pair: only the sampled share may have changed
            return None
        for served in model.versions.values():
            served.after_call = None
        model.shadow = None
        if candidate is not None and live is not None and self._shadow_lane is not None:
            model.shadow = self._shadow_lane(live, candidate, rate)
            live.after_call = model.shadow
        return lane

    @staticmethod
    def _load_version(name: str, version: str, version_dir: Path) -> ServedModel:
        """Reads, checks and warms one version (blocking: run it on a thread)."""
        config = load_version_config(version_dir.parent, version_dir)
        session = OnnxSession(version_dir / MODEL_FILE, config.onnxruntime, config.output_names)
        if config.input_name != session.input_name:
            # The graph is fed by its own input's name whatever the config says, while clients
            # are told (ModelMetadata, ModelConfig) and held to the config's: a name that
            # differs turned away every client that used the graph's.
            raise ValueError(
                f"{find_config(version_dir.parent, version_dir)}: [input] name "
                f"{shown(config.input_name)} is not the graph's input name "
                f"{shown(session.input_name)} ({version_dir / MODEL_FILE}); they must be the same"
            )
        served = ServedModel(name, version, version_dir, config, session)
        graph_names = session.metadata.get("feature_names")
        if graph_names and graph_names.split(",") != list(served.schema.names):
            raise ValueError(
                f"{version_dir}: the graph's feature_names ({graph_names}) do not match the "
                f"config's features ({','.join(served.schema.names)})"
            )
        session.warm_up()
        return served

    # ---- serving -------------------------------------------------------------------------

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The named model at ``version`` (a number or an alias; its live one when empty);
        NotFound names what is available."""
        model = self._models.get(name)
        if model is None or model.live is None:
            known = ", ".join(self.names()) or "none"
            raise NotFound(f"model {shown(name)} is not loaded (loaded models: {known})")
        if not version:
            return model.versions[model.live]
        number = version.lstrip("0") or "0" if version.isdigit() else None
        if number is None:
            number = model.routing.resolve_alias(version, model.live)
            if number is None:
                raise NotFound(
                    f"model '{name}' has no version or alias {shown(version)} "
                    f"(loaded: {', '.join(model.versions)}; aliases: {self._alias_list(model)})"
                )
        served = model.versions.get(number)
        if served is None:
            known = ", ".join(model.versions)
            raise NotFound(
                f"model '{name}' has no version {shown(version)} loaded (loaded: {known})"
            )
        return served

    def assign(
        self, name: str, version: str | None, tenant: str, lead_ids: Sequence[str]
    ) -> list[tuple[ServedModel, list[int]]]:
        """Which version scores which leads (positions): one group, unless a canary is on and
        the request names no version, when each lead goes where its sticky hash sends it."""
        served = self.get(name, version)
        model = self._models[name]
        canary = model.routing.canary
        if version or canary is None or canary not in model.versions or canary == model.live:
            return [(served, list(range(len(lead_ids))))]
        weight = model.routing.canary_weight
        on_canary = [canary_share(name, tenant, lead_id) < weight for lead_id in lead_ids]
        live_rows = [i for i, hit in enumerate(on_canary) if not hit]
        canary_rows = [i for i, hit in enumerate(on_canary) if hit]
        groups = []
        if live_rows:
            groups.append((served, live_rows))
        if canary_rows:
            groups.append((model.versions[canary], canary_rows))
        return groups

    # ---- reading the state ---------------------------------------------------------------

    def versions(self, name: str) -> list[str]:
        model = self._models.get(name)
        return [] if model is None else list(model.versions)

    def names(self) -> list[str]:
        return sorted(n for n, m in self._models.items() if m.versions)

    def live_version(self, name: str) -> str | None:
        model = self._models.get(name)
        return None if model is None else model.live

    def routing(self, name: str) -> RoutingPolicy:
        model = self._models.get(name)
        return RoutingPolicy() if model is None else model.routing

    def version_policy(self, name: str) -> VersionPolicy:
        """The ``[version_policy]`` the model's versions were last selected by."""
        model = self._models.get(name)
        return VersionPolicy() if model is None else model.policy

    def on_disk(self, name: str) -> dict[str, Path]:
        model = self._models.get(name)
        return {} if model is None else dict(model.on_disk)

    def status(self) -> list[ModelStatus]:
        rows = []
        for name in sorted(self._models):
            model = self._models[name]
            for version in sorted(set(model.on_disk) | set(model.versions), key=int):
                path = str(model.on_disk.get(version, ""))
                if version in model.versions:
                    rows.append(ModelStatus(name, version, "READY", path, _role(model, version)))
                elif version in model.failed:
                    rows.append(
                        ModelStatus(name, version, "FAILED", path, model.failed[version][1])
                    )
                else:
                    why = "unloaded" if version in model.routing.unloaded else "not in policy"
                    rows.append(ModelStatus(name, version, "UNAVAILABLE", path, why))
        return rows

    def last_call(self, name: str) -> float:
        """``time.monotonic()`` of the model's last call on any version (0: none yet)."""
        model = self._models.get(name)
        if model is None:
            return 0.0
        return max((s.last_call for s in model.versions.values()), default=0.0)

    @property
    def ready(self) -> bool:
        return any(m.versions for m in self._models.values())

    async def close(self) -> None:
        for model in self._models.values():
            lane, model.shadow = model.shadow, None
            if lane is not None:
                lane.live.after_call = None
                await lane.close()
            for served in model.versions.values():
                await served.close()

    @staticmethod
    def _alias_list(model: _Model) -> str:
        names = ["champion", "challenger", *sorted(model.routing.aliases)]
        return ", ".join(names)


def _role(model: _Model, version: str) -> str:
    """What a ready version does, for the index's reason field: live, canary, shadow, aliases."""
    routing = model.routing
    roles = []
    if version == model.live:
        roles.append("live")
    if version == routing.canary and version != model.live:
        roles.append(f"canary {routing.canary_weight:g}")
    if version == routing.shadow and version != model.live:
        rate = routing.shadow_rate
        roles.append("shadow" if rate == 1.0 else f"shadow {rate:g}")
    roles += [f"alias {name}" for name, v in sorted(routing.aliases.items()) if v == version]
    return ", ".join(roles)
