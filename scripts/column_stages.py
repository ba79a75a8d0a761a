"""CPU time of each stage of a column-wise ScoreLeads request, in one process (no gRPC).

The same 1,000 synthetic leads the bench sends (``benchmarks.leads``, seed 1), through the same
functions the servicer calls, each timed by the thread's CPU clock; the minimum of N repetitions
is printed, so other processes on the machine hardly enter. ModelInfer's stages for the same
rows are printed alongside. Run from the repository root::

    python scripts/column_stages.py [repetitions] [leads] [reasons]
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable

import numpy as np

from benchmarks.leads import (
    as_matrix,
    load_schema,
    model_infer_request,
    random_rows,
    score_columns_request,
)
from gateway import lead_codec, oip_codec
from gateway.settings import BUNDLED_MODELS
from leadgw_client.pb.inference import grpc_service_pb2 as oip
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from runtimes import scoring
from runtimes.repository import ModelRepository


def stages(leads: int, reasons: int) -> dict[str, Callable[[], object]]:
    served = ModelRepository._load_version("lead_scorer", "1", BUNDLED_MODELS / "lead_scorer" / "1")
    schema = load_schema(BUNDLED_MODELS, "lead_scorer")
    rows = random_rows(schema, leads, random.Random(1))
    wire = score_columns_request(schema, rows, "lead_scorer").SerializeToString()
    request = pb.ScoreLeadsRequest.FromString(wire)
    lead_ids, columns = lead_codec.lead_columns_from_pb(
        request.columns, served.schema.category_lists
    )
    features = served.schema.encode_lead_columns(lead_ids, columns)
    outputs = served.session.run(features)
    scores = scoring.build_score_columns(served, lead_ids, columns, outputs, reasons)
    contributions = outputs[served.config.contributions_output]
    probability = outputs[served.config.probability_output].reshape(-1).astype(np.float64)
    top = scoring._top_k_by_magnitude(contributions, reasons)
    values = [columns.get(name) for name in served.schema.names]
    oip_wire = model_infer_request(as_matrix(schema, rows), "lead_scorer").SerializeToString()
    oip_request = oip.ModelInferRequest.FromString(oip_wire)
    matrix = oip_codec.decode_features(oip_request, served)
    names = oip_codec.requested_outputs(oip_request, served)
    return {
        "parse": lambda: pb.ScoreLeadsRequest.FromString(wire),
        "decode columns": lambda: lead_codec.lead_columns_from_pb(
            request.columns, served.schema.category_lists
        ),
        "lead ids unique": lambda: scoring._check_unique(lead_ids),
        "encode": lambda: served.schema.encode_lead_columns(lead_ids, columns),
        "onnx run": lambda: served.session.run(features),
        "scores": lambda: scoring.build_score_columns(served, lead_ids, columns, outputs, reasons),
        # The answer is encoded to its wire bytes here: no message, no serialising after it.
        "answer, encoded": lambda: lead_codec.score_columns_answer(scores),
        "  of scores: top reasons": lambda: scoring._top_k_by_magnitude(contributions, reasons),
        "  of scores: labels": lambda: served.schema.column_labeller.labels(values, top),
        "  of scores: ranks": lambda: scoring._ranks(probability),
        "ModelInfer: parse": lambda: oip.ModelInferRequest.FromString(oip_wire),
        "ModelInfer: decode": lambda: oip_codec.decode_features(oip_request, served),
        "ModelInfer: onnx run": lambda: served.session.run(matrix),
        # A raw request's answer is encoded to its wire bytes here: no serialising after it.
        "ModelInfer: answer, encoded": lambda: oip_codec.encode_response(
            oip_request, served, outputs, names
        ),
    }


def main() -> None:
    defaults = ["30", "1000", "3"]
    repetitions, leads, reasons = (int(a) for a in [*sys.argv[1:4], *defaults[len(sys.argv) - 1 :]])
    timed = stages(leads, reasons)
    best = dict.fromkeys(timed, float("inf"))
    for _ in range(repetitions):
        for name, run in timed.items():
            start = time.thread_time_ns()
            run()
            best[name] = min(best[name], time.thread_time_ns() - start)
    for name, ns in best.items():
        print(f"{name:28s} {ns / 1e3:9.1f} µs")
    score_leads = sum(ns for name, ns in best.items() if not name.startswith((" ", "ModelInfer")))
    model_infer = sum(ns for name, ns in best.items() if name.startswith("ModelInfer"))
    print(f"{'ScoreLeads total':28s} {score_leads / 1e3:9.1f} µs")
    print(f"{'ModelInfer total':28s} {model_infer / 1e3:9.1f} µs")


if __name__ == "__main__":
    main()
