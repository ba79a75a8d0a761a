"""leadgw's own ``LeadService.ScoreLeads``: named features per lead, scores with reasons back."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.leads import Feature, score_columns_request, score_leads_request
from benchmarks.targets import GrpcUnaryTarget, TargetError
from leadgw_client.pb.leadgw.v1 import lead_service_pb2

SCORE_LEADS = "/leadgw.v1.LeadService/ScoreLeads"


@dataclass
class ScoreLeadsTarget(GrpcUnaryTarget):
    def check_response(self, response: bytes) -> str:
        message = lead_service_pb2.ScoreLeadsResponse.FromString(response)
        if message.HasField("columns"):
            columns = message.columns
            scored, p, model = len(columns.lead_ids), list(columns.probability), columns.model_name
        else:
            scored, model = (
                len(message.scores),
                message.scores[0].model_name if message.scores else "",
            )
            p = [s.probability for s in message.scores]
        if scored != self.rows_per_request or len(p) != scored:
            raise TargetError(
                f"{self.name}: the preflight response scored {scored} leads, "
                f"expected {self.rows_per_request}"
            )
        return f"{scored} scores, first p={p[0]:.3f} ({model})"


def score_leads_target(
    name: str,
    address: str,
    model: str,
    schema: list[Feature],
    batches: list[list[list[object]]],
    timeout_s: float,
    server_pid: int | None = None,
    *,
    columns: bool = False,
) -> ScoreLeadsTarget:
    """``columns``: send the leads column-wise (``ScoreLeadsRequest.columns``)."""
    build = score_columns_request if columns else score_leads_request
    payloads = tuple(
        build(schema, rows, model, first_id=i * len(rows)).SerializeToString()
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
