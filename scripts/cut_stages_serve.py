"""``leadgw serve`` with stages of a call cut out, to weigh each by what the server's CPU per call
loses without it (``serve_cpu_ab.py --cut-a/--cut-b``; docs/perf/2026-11-29-server-ladder.md).

A profiler sees a stage's own frames, not what it costs the rest of the call (py-spy saw ~40-50
µs of the telemetry wrapper's frames a ScoreLeads call, where the server's CPU fell by 50-120 µs
without it). Cuts, comma-separated in ``--cut`` (the other arguments go to ``leadgw serve``):

- ``servicer``: ScoreLeads and ModelInfer answer the first real answer they gave, as it was:
  the call without the scorer, the batcher and the model.
- ``chain``: no wrapper chain (draining gate, authentication, rate limits, telemetry, error
  mapping, request decoding) but the one that makes every caller anonymous, as without a keys
  file (the servicers read the caller's tenant).
- ``telemetry``: the chain without its telemetry wrapper (the server span and the RPC metric).
- ``rate-limits``: the chain without its two rate-limit wrappers.

An experiment, never a way to serve: a cut gateway skips work its callers rely on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

CUTS = ("servicer", "chain", "telemetry", "rate-limits")
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


def cut(stages: set[str]) -> None:
    import gateway.interceptors as interceptors
    import gateway.server as server

    if "servicer" in stages:
        from gateway.lead_servicer import LeadServicer
        from gateway.oip_servicer import InferenceServicer

        _answer_once(LeadServicer, "ScoreLeads")
        _answer_once(InferenceServicer, "ModelInfer")
    if "chain" in stages:
        # The servicers read the caller: it is set, anonymous, as without a keys file.
        anonymous = interceptors.authentication(None)
        server.wrapped_registration = lambda registrar, _wrap: interceptors.wrapped_registration(
            registrar, anonymous
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
