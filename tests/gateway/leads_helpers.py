"""Sample leads and requests for the gateway's tests."""

from __future__ import annotations

from gateway import lead_codec
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from runtimes.training import synth
from runtimes.types import LeadInput


def sample_leads(n: int, seed: int = 11, prefix: str = "L-") -> list[LeadInput]:
    return synth.generate(n, seed).leads(prefix)


def score_request(leads: list[LeadInput], **fields: object) -> pb.ScoreLeadsRequest:
    return pb.ScoreLeadsRequest(leads=[lead_codec.lead_to_pb(lead) for lead in leads], **fields)


def columns_request(leads: list[LeadInput], **fields: object) -> pb.ScoreLeadsRequest:
    """The same leads column-wise: one column per feature any lead has, typed by its values,
    with the leads that lack it (or send None) listed as missing."""
    request = pb.ScoreLeadsRequest(**fields)  # type: ignore[arg-type]
    request.columns.lead_ids.extend(lead.lead_id for lead in leads)
    names = dict.fromkeys(name for lead in leads for name in lead.features)
    for name in names:
        values = [lead.features.get(name) for lead in leads]
        present = [v for v in values if v is not None]
        if not present:
            continue
        column = request.columns.features.add(name=name)
        column.missing.extend(i for i, v in enumerate(values) if v is None)
        if isinstance(present[0], bool):
            column.flags.values.extend(bool(v) for v in values)
        elif isinstance(present[0], str):
            column.categories.values.extend("" if v is None else str(v) for v in values)
        else:
            column.numbers.values.extend(0.0 if v is None else float(v) for v in values)
    return request
