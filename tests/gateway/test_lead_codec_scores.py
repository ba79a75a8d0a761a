"""``lead_codec.scores_to_pb`` / ``score_to_pb``: every field of every score and reason reaches the
answer, in order (they build messages in place, field by field)."""

from __future__ import annotations

from gateway import lead_codec
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from runtimes.types import Band, LeadScore, Reason


def _scores() -> list[LeadScore]:
    return [
        LeadScore(
            lead_id="lead-a",
            probability=0.61,
            band=Band.HOT,
            rank=1,
            logit=0.45,
            base_value=-4.5,
            reasons=[
                Reason("meeting_booked", "Meeting booked", 1.25),
                Reason("age", "Age 61", -0.5),
                Reason("channel", "Came via referral", 0.125),
            ],
            model_name="lead_scorer",
            model_version="2",
        ),
        LeadScore("lead-b", 0.02, Band.COLD, 3, -3.9, -4.5, [], "lead_scorer", "2"),
        LeadScore("lead-c", 0.05, Band.WARM, 2, -2.9, -4.5, [Reason("age", "Age 30", 0.75)]),
    ]


def _expected(score: LeadScore) -> pb.LeadScore:
    return pb.LeadScore(
        lead_id=score.lead_id,
        probability=score.probability,
        band={Band.HOT: pb.SCORE_BAND_HOT, Band.WARM: pb.SCORE_BAND_WARM}.get(
            score.band, pb.SCORE_BAND_COLD
        ),
        rank=score.rank,
        logit=score.logit,
        base_value=score.base_value,
        reasons=[
            pb.Reason(feature=r.feature, label=r.label, contribution=r.contribution)
            for r in score.reasons
        ],
        model_name=score.model_name,
        model_version=score.model_version,
    )


def test_scores_to_pb_carries_every_field_of_every_score_in_order() -> None:
    scores = _scores()
    answer = lead_codec.scores_to_pb(scores)
    assert answer == pb.ScoreLeadsResponse(scores=[_expected(s) for s in scores])
    assert [s.lead_id for s in answer.scores] == ["lead-a", "lead-b", "lead-c"]
    assert [r.label for r in answer.scores[0].reasons] == [
        "Meeting booked",
        "Age 61",
        "Came via referral",
    ]
    assert answer.scores[2].band == pb.SCORE_BAND_WARM


def test_score_to_pb_is_one_score_of_the_answer() -> None:
    for score in _scores():
        assert lead_codec.score_to_pb(score) == _expected(score)
    assert lead_codec.scores_to_pb([]) == pb.ScoreLeadsResponse()
