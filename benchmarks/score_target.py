"""leadgw's own ``LeadService.ScoreLeads``: named features per lead, scores with reasons back."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.leads import Feature, score_leads_request
from benchmarks.targets import GrpcUnaryTarget, TargetError
from gateway.pb.leadgw.v1 import lead_service_pb2

SCORE_LEADS = "/leadgw.v1.LeadService/ScoreLeads"


@dataclass
class ScoreLeadsTarget(GrpcUnaryTarget):
    def check_response(self, response: bytes) -> str:
        message = lead_service_pb2.ScoreLeadsResponse.FromString(response)
        if len(message.scores) != self.rows_per_request:
            raise TargetError(
                f"{self.name}: the preflight response scored {len(message.scores)} leads, "
                f"expected {self.rows_per_request}"
            )
        first = message.scores[0]
        return f"{len(message.scores)} scores, first p={first.probability:.3f} ({first.model_name})"


def score_leads_target(
    name: str,
    address: str,
    model: str,
    schema: list[Feature],
    batches: list[list[list[object]]],
    timeout_s: float,
    server_pid: int | None = None,
) -> ScoreLeadsTarget:
    payloads = tuple(
        score_leads_request(schema, rows, model, first_id=i * len(rows)).SerializeToString()
        for i, rows in enumerate(batches)
    )
    return ScoreLeadsTarget(
        name=name,
        address=address,
        method=SCORE_LEADS,
        payloads=payloads,
        rows_per_request=len(batches[0]),
        timeout_s=timeout_s,
        server_pid=server_pid,
    )
