"""Sample leads and requests for the gateway's tests."""

from __future__ import annotations

from gateway import lead_codec
from gateway.pb.leadgw.v1 import lead_service_pb2 as pb
from runtimes.lead_model import synth
from runtimes.types import LeadInput


def sample_leads(n: int, seed: int = 11, prefix: str = "L-") -> list[LeadInput]:
    return synth.generate(n, seed).leads(prefix)


def score_request(leads: list[LeadInput], **fields: object) -> pb.ScoreLeadsRequest:
    return pb.ScoreLeadsRequest(leads=[lead_codec.lead_to_pb(lead) for lead in leads], **fields)
