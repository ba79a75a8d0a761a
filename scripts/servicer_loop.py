"""A servicer's own cost a call, hot, with no gRPC around it: ``LeadService.ScoreLeads`` on one
lead, or ``ModelInfer`` on one row, called in a loop on the gateway's own servicer, batcher and
ONNX Runtime session.

A live worker's CPU a call (``scripts/serve_cpu_ab.py``) is what the targets are about, but
its rounds spread by tens of µs on a shared host: a change of a few µs of Python is seen here
first, then weighed there. Each call parses a request from its wire bytes (one of 50 different
requests, the bench's synthetic leads), awaits the servicer and serialises the answer; the
figure is the best over ``--blocks`` blocks of ``--calls`` calls (the least disturbed by the
machine). ``--tree DIR`` imports leadgw from another source tree (``git archive <commit> | tar
-x -C DIR``, with ``leadgw_client/pb`` copied in), to compare commits; run each tree in turn,
alternating::

    python scripts/servicer_loop.py [--request leads-1|infer-1] [--tree DIR]
        [--calls 2000] [--blocks 15]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = ("leads-1", "infer-1")
DISTINCT_REQUESTS = 50


class _Context:
    """The one thing the servicers ask of a gRPC context on this path: no deadline."""

    def time_remaining(self) -> None:
        return None


async def _measure(request: str, calls: int, blocks: int) -> float:
    from benchmarks.leads import (
        as_matrix,
        load_schema,
        model_infer_request,
        random_rows,
        score_leads_request,
    )
    from gateway.auth import ANONYMOUS, set_caller
    from gateway.lead_servicer import LeadServicer
    from gateway.oip_servicer import InferenceServicer
    from gateway.settings import BUNDLED_MODELS
    from leadgw_client.pb.inference import grpc_service_pb2
    from leadgw_client.pb.leadgw.v1 import lead_service_pb2
    from runtimes.batcher import DynamicBatcher
    from runtimes.repository import ModelRepository
    from runtimes.scoring import LeadScorer

    def batcher(served: Any) -> DynamicBatcher:
        return DynamicBatcher.from_config(
            served.session.run,
            served.config.batching,
            name=served.name,
            computes_on_caller=served.session.computes_on_caller,
        )

    repository = ModelRepository(BUNDLED_MODELS)
    await repository.load(make_batcher=batcher)
    model = "lead_scorer"
    schema = load_schema(BUNDLED_MODELS, model)
    rows = [random_rows(schema, 1, random.Random(seed)) for seed in range(DISTINCT_REQUESTS)]
    if request == "leads-1":
        scorer = LeadScorer(repository, default_model=model, max_leads=1000)
        method: Any = LeadServicer(scorer, default_max_reasons=3).ScoreLeads
        parse = lead_service_pb2.ScoreLeadsRequest.FromString
        wires = [score_leads_request(schema, r, model).SerializeToString() for r in rows]
    else:
        method = InferenceServicer(repository, "loop", None, max_rows=1000).ModelInfer
        parse = grpc_service_pb2.ModelInferRequest.FromString
        wires = [model_infer_request(as_matrix(schema, r), model).SerializeToString() for r in rows]
    set_caller(ANONYMOUS)
    context = _Context()

    async def call(wire: bytes) -> bytes:
        answer = await method(parse(wire), context)
        return answer if isinstance(answer, bytes) else answer.SerializeToString()

    _check(request, [await call(wire) for wire in wires])  # and the warm-up's start
    for wire in wires * 20:  # warm-up
        await call(wire)
    best = float("inf")
    for _ in range(blocks):
        start = time.perf_counter()
        for i in range(calls):
            await call(wires[i % len(wires)])
        best = min(best, (time.perf_counter() - start) / calls)
    await repository.close()
    return best * 1e6


def _check(request: str, answers: list[bytes]) -> None:
    """Refuses to time a servicer whose answers are not whole: a figure for a call that failed
    or answered less would mean nothing."""
    from leadgw_client.pb.inference import grpc_service_pb2
    from leadgw_client.pb.leadgw.v1 import lead_service_pb2

    for answer in answers:
        if request == "leads-1":
            scores = lead_service_pb2.ScoreLeadsResponse.FromString(answer).scores
            if len(scores) != 1 or len(scores[0].reasons) != 3:
                raise SystemExit(
                    f"ScoreLeads answered {len(scores)} scores, expected 1 with 3 reasons"
                )
        else:
            outputs = grpc_service_pb2.ModelInferResponse.FromString(answer).outputs
            names = [output.name for output in outputs]
            if names != ["probability", "logit", "contributions"]:
                raise SystemExit(f"ModelInfer answered outputs {names}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--request", choices=REQUESTS, default="leads-1")
    parser.add_argument("--tree", type=Path, default=ROOT, help="leadgw's sources (default: here)")
    parser.add_argument("--calls", type=int, default=2000, help="calls a block (default: 2000)")
    parser.add_argument("--blocks", type=int, default=15, help="blocks; the best counts (15)")
    args = parser.parse_args()
    if args.calls < 1 or args.blocks < 1:
        parser.error("--calls and --blocks must be at least 1")
    tree = args.tree.resolve()
    if not (tree / "gateway" / "lead_servicer.py").is_file():
        parser.error(f"--tree {tree} holds no leadgw sources (gateway/lead_servicer.py)")
    sys.path.insert(0, str(tree))
    micros = asyncio.run(_measure(args.request, args.calls, args.blocks))
    print(f"{args.request}: {micros:.2f} µs a call, best of {args.blocks} blocks ({tree})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
