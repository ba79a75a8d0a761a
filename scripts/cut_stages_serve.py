"""``leadgw serve`` with stages of a call cut out, to weigh each by what the server's CPU per call
loses without it (``serve_cpu_ab.py --cut-a/--cut-b``; docs/perf/2026-11-29-server-ladder.md).

A profiler sees a stage's own frames, not what it costs the rest of the call (the ONNX Runtime
run of one lead: ~30 µs in a loop, ~75 µs of its thread's CPU in a live gateway, ~154 µs of the
worker's CPU a call when cut out: docs/perf/2026-11-30-servicer-stages.md). Cuts,
comma-separated in ``--cut`` (the other arguments go to ``leadgw serve``):

- ``servicer``: ScoreLeads and ModelInfer answer the first real answer they gave, as it was:
  the call without the scorer, the batcher and the model.
- ``chain``: no wrapper chain (draining gate, authentication, rate limits, telemetry, error
  mapping) but the one that makes every caller anonymous, as without a keys file (the servicers
  read the caller's tenant), and request decoding (the parse grpc would make anyway; its
  serializer passes the servicers' wire-bytes answers through).
- ``telemetry``: the chain without its telemetry wrapper (the server span and the RPC metric).
- ``rate-limits``: the chain without its two rate-limit wrappers.
- ``span-export``: sampled spans are still made, ended and queued for the export thread, which
  hands them to an exporter that drops them: no encoding, no gRPC call to the collector (the
  gateway's OTLP/gRPC exporter, ``WireOTLPSpanExporter``; meaningful with tracing on, through the
  ``OTEL_*`` variables in the environment).

Cuts inside the servicer (ScoreLeads' stages, for one request sent over and over: each replays
what it gave the first time, so the rest of the call runs as it would):

- ``decode``: the leads as the core's types (``lead_codec.leads_from_pb``);
- ``model``: the model's outputs (``ServedModel.infer``: the batcher and the ONNX run);
- ``batcher``: the batcher alone: ``ServedModel.infer`` runs the session on the loop directly;
- ``scores``: bands, ranks, reasons and the answer message (``build_scores`` and
  ``lead_codec.scores_to_pb``).

An experiment, never a way to serve: a cut gateway skips work its callers rely on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

CUTS = (
    "servicer", "chain", "telemetry", "rate-limits", "span-export", "decode", "model", "batcher",
    "scores",
)  # fmt: skip
# A wrapper of the chain, by the start of its __qualname__ (gateway/server.py builds the chain).
_WRAPPERS = {
    "telemetry": ("_TelemetryInterceptor",),
    "rate-limits": ("request_rate_limiting", "lead_rate_limiting"),
}


def _answer_once(cls: type, name: str) -> None:
    """``cls.name`` answers every call with its first answer."""
    real = getattr(cls, name)
    first: list[Any] = []

    async def replay(self: Any, request: Any, context: Any) -> Any:
        if not first:
            first.append(await real(self, request, context))
        return first[0]

    setattr(cls, name, replay)


def _replay_first(module: Any, name: str, *, is_async: bool = False) -> None:
    """``module.name`` returns what its first call returned, whatever it is called with."""
    real = getattr(module, name)
    first: list[Any] = []

    def replay(*args: Any, **kwargs: Any) -> Any:
        if not first:
            first.append(real(*args, **kwargs))
        return first[0]

    async def replay_async(*args: Any, **kwargs: Any) -> Any:
        if not first:
            first.append(await real(*args, **kwargs))
        return first[0]

    setattr(module, name, replay_async if is_async else replay)


def _servicer_stages(stages: set[str]) -> None:
    from gateway import lead_codec
    from runtimes import scoring
    from runtimes.served_model import ServedModel

    if "decode" in stages:
        _replay_first(lead_codec, "leads_from_pb")
    if "model" in stages:
        _replay_first(ServedModel, "infer", is_async=True)
    elif "batcher" in stages:

        async def run_directly(self: Any, features: Any, *_args: Any, **_kwargs: Any) -> Any:
            return self.session.run(features)

        ServedModel.infer = run_directly  # type: ignore[method-assign]
    if "scores" in stages:
        _replay_first(scoring, "build_scores")
        _replay_first(lead_codec, "scores_to_pb")


def cut(stages: set[str]) -> None:
    import gateway.interceptors as interceptors
    import gateway.server as server

    _servicer_stages(stages)
    if "span-export" in stages:
        from opentelemetry.sdk.trace.export import SpanExportResult

        from gateway.telemetry import _otlp_wire

        def drop(self: Any, spans: Any, *_args: Any, **_kwargs: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

        _otlp_wire.WireOTLPSpanExporter.export = drop  # type: ignore[method-assign]

    if "servicer" in stages:
        from gateway.lead_servicer import LeadServicer
        from gateway.oip_servicer import InferenceServicer

        _answer_once(LeadServicer, "ScoreLeads")
        _answer_once(InferenceServicer, "ModelInfer")
    if "chain" in stages:
        # The servicers read the caller: it is set, anonymous, as without a keys file. Request
        # decoding stays: it parses as grpc's deserializer would, and its serializer passes an
        # answer that is already bytes through (both servicers answer wire bytes).
        kept = interceptors.chain(interceptors.authentication(None), interceptors.request_decoding)
        server.wrapped_registration = lambda registrar, _wrap: interceptors.wrapped_registration(
            registrar, kept
        )
        return
    dropped = tuple(prefix for stage in stages & _WRAPPERS.keys() for prefix in _WRAPPERS[stage])
    if dropped:
        real_chain = interceptors.chain

        def chain(*wrappers: Any) -> Any:
            kept = [w for w in wrappers if not getattr(w, "__qualname__", "").startswith(dropped)]
            if len(kept) != len(wrappers) - len(dropped):  # the chain changed under this script
                raise SystemExit(f"cut_stages_serve: did not find each of {dropped} in the chain")
            return real_chain(*kept)

        server.chain = chain


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    parser.add_argument("--cut", default="", help=f"comma-separated, from {', '.join(CUTS)}")
    args, serve_args = parser.parse_known_args()
    stages = {s.strip() for s in args.cut.split(",") if s.strip()}
    unknown = stages - set(CUTS)
    if unknown:
        parser.error(f"unknown cut {sorted(unknown)}; choose from {', '.join(CUTS)}")
    sys.path.insert(0, str(Path.cwd()))  # the tree being measured (serve_cpu_ab runs in it)
    cut(stages)
    from gateway.cli import main as leadgw

    return leadgw(["serve", *serve_args])


if __name__ == "__main__":
    sys.exit(main())
