"""Every setting of the gateway, as one typed object built once at start-up and passed down.

Sources, highest priority first: keyword arguments (the CLI's flags), ``LEADGW_*`` environment
variables, the TOML file named by ``LEADGW_CONFIG_FILE`` (or ``--config``), then the defaults below.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gateway.cpu_quota import usable_cpus
from gateway.grpc_experiments import DEFAULT as GRPC_EXPERIMENTS_DEFAULT
from gateway.grpc_experiments import check as check_grpc_experiments
from retrieval.thread_priority import ThreadPriority, check_priority

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Package data of ``runtimes`` (pyproject's package-data), so a plain `pip install .` has it too.
BUNDLED_MODELS = PROJECT_ROOT / "runtimes" / "bundled_models"


def usable_cores() -> int:
    """The CPUs this process may use (cgroup CPU quota, else affinity), capped at the
    ``workers`` limit."""
    return max(1, min(64, usable_cpus()))


class Settings(BaseSettings):
    """leadgw settings. Environment: ``LEADGW_<FIELD>`` (e.g. ``LEADGW_PORT=50052``)."""

    model_config = SettingsConfigDict(env_prefix="LEADGW_", extra="forbid", frozen=True)

    config_file: Path | None = None
    """TOML file with any of these settings (its keys are the field names)."""

    # ---- server ----
    host: str = "127.0.0.1"
    """Address to bind. Anything other than loopback requires a keys file."""
    port: int = Field(50051, ge=0, le=65535)
    """Port to bind; 0 picks a free one (printed in the ready line)."""
    workers: int = Field(default_factory=usable_cores, ge=1, le=64)
    """Server processes sharing the port through SO_REUSEPORT; default one per usable CPU (the
    container's CPU limit where there is one)."""
    pin_workers: Literal["auto", "on", "off"] = "auto"
    """Keep worker i, every thread of it, on one CPU: the i-th this process may use. A worker
    the scheduler moves between cores finds its code and data cold in the new core's caches on
    every call; pinned, it finds them warm: on the 2-core machine a batch-1 call's server CPU is
    5-18% lower at 1 in flight and at 800/s, and capacity at the SLO the same as unpinned in an
    interleaved sweep (docs/perf/2026-12-01-pin-sweep.md). "auto" pins when the workers are
    exactly one per CPU this process may use and no CPU quota is lower (the machine's or a
    pod's cores are the gateway's own, as with Kubernetes' static CPU manager); "on" pins
    whatever the counts; "off" never. One worker is never pinned."""
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    """The event loop each server process runs: uvloop (libuv; less CPU per request, where it
    is installed) or the standard library's. Falls back to asyncio when uvloop is missing."""
    grpc_experiments: str = GRPC_EXPERIMENTS_DEFAULT
    """gRPC core experiments for the gateway's processes (``GRPC_EXPERIMENTS``, which wins when
    set in the environment). The default turns off grpcio's EventEngine client and listener, so
    each call's socket I/O runs on gRPC's poller thread rather than hopping through a pool of
    threads: a worker's CPU per batch-1 call 4-13% lower, ModelInfer's throughput at 64 in flight
    +13% (gateway/grpc_experiments.py). Empty: grpc's own defaults."""
    grace_period_s: float = Field(10.0, ge=0)
    """On SIGTERM/SIGINT: how long in-flight RPCs may take to finish before they are cancelled."""
    drain_s: float = Field(1.0, ge=0)
    """On SIGTERM/SIGINT: how long to keep serving with health NOT_SERVING before refusing new RPCs,
    so that load balancers move away and requests already on the wire are still taken in."""
    max_connection_age_s: float | None = Field(None, gt=0)
    """Close each client connection (GOAWAY) after about this long, so that clients re-resolve
    and spread over new replicas after a scale-up. None: connections live as long as clients
    keep them."""
    max_connection_age_grace_s: float = Field(30.0, ge=0)
    """After max_connection_age_s, how long calls on the old connection may still finish."""
    max_concurrent_streams: int | None = Field(None, ge=1)
    """Calls one client connection may have in flight at once (HTTP/2 SETTINGS
    MAX_CONCURRENT_STREAMS); a client's further calls wait in the client for a free stream.
    None: gRPC's default (no cap)."""
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """Largest request or response message; larger ones are refused by size."""
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"

    # ---- auth / tenancy ----
    keys_file: Path | None = None
    """TOML file of API keys (hashed) → tenant, scopes and rate limits. None: unauthenticated,
    loopback only. Reloaded when it changes (polled every 0.5 s) and on SIGHUP."""
    tls_cert_file: Path | None = None
    """PEM server certificate chain. With ``tls_key_file``: the gRPC port speaks TLS only.
    Both files are re-read when they change, for new connections, without a restart."""
    tls_key_file: Path | None = None
    """PEM private key of ``tls_cert_file``."""
    tls_client_ca_file: Path | None = None
    """PEM CA certificates for mTLS: clients must present a certificate signed by one of them."""
    rate_requests_per_s: float | None = Field(None, gt=0)
    """Default ScoreLeads + ModelInfer calls per second per tenant, for the whole gateway.
    None: no limit. A tenant's own ``rate_requests_per_s`` in the keys file wins."""
    rate_leads_per_s: float | None = Field(None, gt=0)
    """Default leads (rows) scored per second per tenant; None: no limit. Keys file wins."""
    rate_burst_s: float = Field(1.0, gt=0)
    """How many seconds of its rate a tenant may spend at once after being idle."""
    rate_refusal_hold_ms: float = Field(50.0, ge=0, le=10_000)
    """A rate-limit refusal is held this long to twice this long (at random) after the call
    arrived, then sent at the next 10 ms tick (sooner if the caller's deadline is nearer), so a
    client that retries at once cannot flood; 0: at once."""
    audit_log: Literal["all", "denied"] = "all"
    """Auth decisions logged by ``leadgw.audit``: every one, or only the refusals."""
    allow_insecure_keys_off_loopback: bool = False
    """Let API keys cross the network in clear (no TLS off loopback); logged as an error."""

    # ---- models ----
    model_repository: Path = BUNDLED_MODELS
    """Triton-style: <repo>/<model>/<version>/model.onnx and <repo>/<model>/config.toml."""
    default_model: str = "lead_scorer"
    """Model used when a ScoreLeads request names none."""
    max_leads_per_request: int = Field(10_000, ge=1)
    """ScoreLeads requests with more leads, and ModelInfer requests with more rows, are refused
    with INVALID_ARGUMENT."""
    default_max_reasons: int = Field(3, ge=0, le=32)
    model_control_mode: Literal["none", "poll", "explicit"] = "none"
    """none: load at start only; poll: watch the repository every repository_poll_secs and apply
    new, changed and removed versions and routing; explicit: only the repository RPCs (and
    ``leadgw models load|unload|promote|rollback|shadow|canary``) change what serves."""
    repository_poll_secs: float = Field(15.0, gt=0)
    """poll and explicit modes: how often each worker reads the repository (explicit: its
    control tables only). A control RPC reaches every worker within this interval."""
    model_control_timeout_s: float = Field(30.0, gt=0)
    """How long a control RPC waits for every worker to apply it before it says which did not."""

    # ---- data / retrieval ----
    data_dir: Path = Path(".leadgw")
    """Where embedded Qdrant (Qdrant Edge) keeps its files, relative to the working directory
    unless absolute."""
    qdrant_url: str | None = None
    """A Qdrant server URL. None: the embedded Qdrant Edge store under data_dir."""
    qdrant_api_key: str | None = None
    require_external_store: bool = False
    """Refuse to start without qdrant_url. Set it wherever more than one replica runs: each
    replica's embedded store would hold notes the others never see."""
    embeddings_url: str | None = None
    """OpenAI-compatible embeddings endpoint. None: the local ONNX MiniLM model."""
    embeddings_model: str = "all-MiniLM-L6-v2"
    embeddings_api_key: str | None = None
    embeddings_local: Literal["all-MiniLM-L6-v2-onnx-int8-dq", "all-MiniLM-L6-v2-onnx-int8"] = (
        "all-MiniLM-L6-v2-onnx-int8-dq"
    )
    """Without embeddings_url: which form of the local MiniLM embeds notes and queries. The
    default runs integer GEMMs (half the time of a query's embedding);
    all-MiniLM-L6-v2-onnx-int8 is earlier versions' float form (docs/notes-store.md)."""
    notes_reindex_at_start: bool = True
    """A store whose notes were embedded by the other local form (a data dir of an earlier
    version) is re-embedded from its stored texts as the gateway starts, before it serves,
    with progress in the log. False: the notes RPCs refuse and the log names
    ``leadgw notes reindex`` instead."""
    load_demo_corpus: bool = True
    """Load the seeded demo notes on start when the store is empty."""

    # ---- LLM / summaries ----
    llm_base_url: str | None = None
    """OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1. None: the marked fallback only."""
    llm_model: str = "smollm2-135m-instruct"
    llm_api_key: str = "not-needed"
    llm_connect_timeout_s: float = Field(2.0, gt=0)
    llm_read_timeout_s: float = Field(20.0, gt=0)
    llm_max_retries: int = Field(2, ge=0, le=10)
    llm_max_tokens: int = Field(256, ge=16)
    """Sent to the endpoint, and enforced by the gateway whatever the endpoint does."""
    llm_http_client: Literal["aiohttp", "httpx"] = "aiohttp"
    """The openai client's HTTP transport. aiohttp (the openai package's ``DefaultAioHttpClient``)
    costs the event loop ~30% less CPU per streamed chunk than httpx, the openai package's own
    default (docs/perf/2026-12-02-llm-http.md). Both speak HTTP/1.1; httpx also HTTP/2."""
    pii_masking: Literal["auto", "on", "off"] = "auto"
    """auto: mask personal data only when the LLM endpoint is not on loopback."""
    summary_deadline_s: float = Field(20.0, gt=0)
    """The longest a summary may take: the deadline when the client sends none, and a cap on a
    longer one (a summary still running when the connection's grace ends would be cut with
    UNAVAILABLE instead of ending with its marked fallback)."""
    summaries_per_tenant: int = Field(4, ge=1)
    """Concurrent summaries one tenant may run in the process that runs them (the summaries
    process: the whole gateway; without it, each worker); more are refused with
    RESOURCE_EXHAUSTED. A tenant's own ``summaries`` in the keys file wins."""
    summary_cache_entries: int = Field(1024, ge=0)
    summary_max_chars: int = Field(4000, ge=200, le=100_000)
    """The most characters of model output read for one summary; the rest is never shown."""
    summary_style: Literal["auto", "whole", "per_note"] = "auto"
    """whole: one call writes the summary and its [n] citations. per_note: one call per note
    writes one sentence, and the gateway attaches the note's [n]. auto: per_note for the small
    local models (SmolLM2-135M, Gemma 3 270M), whole for any other model."""
    guard_embed_priority: ThreadPriority = "normal"
    """CPU priority of the thread that embeds for the summary guard: normal (the notes' own
    embedding thread, at the process's priority), idle (Linux SCHED_IDLE, on a thread of its
    own with the same model: it runs only on a core nothing else wants, and any waking request
    thread preempts it) or a nice increment 1..19 (its own thread too). Lowering it was not
    shown to lower ScoreLeads' p99 while summaries run, pinned workers or not
    (docs/perf/2026-11-28-churn.md, docs/perf/2026-12-01-churn-rounds.md); on a
    saturated machine it makes summaries wait, up to their deadline (then the marked fallback,
    guard_timeout). Where the OS refuses, the thread runs at normal (logged)."""
    summary_process: bool = True
    """With two or more workers, summaries run in one process of their own at a lower CPU
    priority (``genai_nice``), and each worker relays the SummarizeLead calls it receives to it
    over a Unix socket. A summary's event-loop work (the LLM's chunks, the guard, retrieval, the
    prompt) then never runs between scoring calls on a worker's loop, and the kernel lets a
    worker's scoring preempt it (docs/perf/2026-12-02-summary-process.md). The per-tenant
    summary limit then holds for the gateway as a whole. False: each worker runs the summaries
    it receives, as a single-process gateway always does."""
    genai_nice: int = Field(19, ge=0, le=19)
    """Nice increment of the processes that serve only notes and summaries, never scoring: the
    summaries process and the embedded store's host (with two or more workers). 19, the lowest
    priority short of SCHED_IDLE: the kernel runs a worker's scoring first. On a saturated
    machine summaries and notes calls then wait for a free core, up to their deadlines. 0: the
    workers' own priority."""
    breaker_failures: int = Field(5, ge=1)
    """Consecutive LLM failures that open the circuit breaker."""
    breaker_reset_s: float = Field(30.0, gt=0)

    # ---- observability ----
    metrics_port: int | None = Field(None, ge=0, le=65535)
    """Serve Prometheus metrics on this port (0 picks one). None: no Prometheus endpoint."""
    metrics_host: str = "127.0.0.1"
    """Address the Prometheus endpoint binds: 0.0.0.0 lets a scraper in the cluster reach it."""
    health_port: int | None = Field(None, ge=0, le=65535)
    """Also serve grpc.health.v1 (and nothing else) in plaintext on this port, on ``host``.
    Kubernetes' native gRPC probes cannot speak TLS: with TLS on, point them here. None: off."""
    trace_detail: Literal["lean", "full"] = "lean"
    """Spans of a sampled request. lean: its server span, plus a child only when it queued
    (``queue wait``), was batched with other requests (the batch span) or a stage was slow.
    full: every stage's span (``encode features``, the batch) on every request."""
    stall_probe: Literal["off", "on", "debug"] = "off"
    """Measure event-loop lag and GC pauses in each process and log them at stop
    (gateway/stall_probe.py); debug also logs every callback that held the loop over 5 ms."""
    trace_slow_ms: float = Field(5.0, ge=0)
    """lean: a stage (encoding, the model's batch run) taking at least this long gets its span."""

    @field_validator("grpc_experiments")
    @classmethod
    def _grpc_experiments(cls, value: str) -> str:
        return check_grpc_experiments(value)

    @field_validator("guard_embed_priority", mode="before")
    @classmethod
    def _thread_priority(cls, value: object) -> ThreadPriority:
        return check_priority(value)

    @model_validator(mode="after")
    def _summaries_outlive_connection_age(self) -> Settings:
        # A summary may run summary_deadline_s; a connection aged out gives its calls only the
        # grace, after which gRPC cuts them with UNAVAILABLE rather than the marked fallback.
        if (
            self.max_connection_age_s is not None
            and self.max_connection_age_grace_s < self.summary_deadline_s
        ):
            raise ValueError(
                f"max_connection_age_grace_s ({self.max_connection_age_grace_s:g} s) is shorter "
                f"than summary_deadline_s ({self.summary_deadline_s:g} s): summaries on an aged "
                "connection would be cut with UNAVAILABLE; raise the grace or lower the deadline"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file_from(init_settings, env_settings)
        if config_file is not None:
            try:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                problem = f"is not valid TOML: {exc}"
                raise ConfigFileError(f"config file {config_file} {problem}") from exc
            except OSError as exc:
                problem = f"cannot be read: {exc.strerror or exc}"
                raise ConfigFileError(f"config file {config_file} {problem}") from exc
        sources.append(OtelPrometheusSource(settings_cls))  # last: leadgw's own settings win
        return tuple(sources)


class OtelPrometheusSource(PydanticBaseSettingsSource):
    """OpenTelemetry's standard ``OTEL_METRICS_EXPORTER=prometheus`` turns the Prometheus
    endpoint on, at ``OTEL_EXPORTER_PROMETHEUS_HOST`` (localhost) and
    ``OTEL_EXPORTER_PROMETHEUS_PORT`` (9464), unless leadgw's own settings say otherwise or
    ``OTEL_SDK_DISABLED=true`` turns every exporter off."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return {}
        exporters = os.environ.get("OTEL_METRICS_EXPORTER", "")
        if "prometheus" not in {name.strip().lower() for name in exporters.split(",")}:
            return {}
        return {
            "metrics_host": os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "localhost"),
            "metrics_port": os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"),
        }


class ConfigFileError(Exception):
    """The TOML file named by ``--config`` or ``LEADGW_CONFIG_FILE`` is missing, cannot be read
    or is not TOML; the message names it."""


def _config_file_from(*sources: PydanticBaseSettingsSource) -> Path | None:
    for source in sources:
        value: Any = source().get("config_file")
        if value:
            path = Path(value)
            if path.is_dir():
                raise ConfigFileError(f"config file {path} is a directory")
            if not path.is_file():
                raise ConfigFileError(f"config file {path} does not exist")
            return path
    return None


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")
