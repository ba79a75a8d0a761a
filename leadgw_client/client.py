"""``LeadClient``: leadgw's scoring and summaries for a backend service, with deadlines,
retries that honour the server's ``RetryInfo``, API keys, TLS and round-robin over replicas."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from leadgw_client.channel import Tls, open_channel
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from leadgw_client.retry import RETRYABLE, RetryPolicy, server_delay_s

FeatureValue = float | int | str | bool | None
Leads = Mapping[str, Mapping[str, FeatureValue]] | Sequence[tuple[str, Mapping[str, FeatureValue]]]
_T = TypeVar("_T")
_BANDS = {pb.SCORE_BAND_HOT: "hot", pb.SCORE_BAND_WARM: "warm", pb.SCORE_BAND_COLD: "cold"}


@dataclass(frozen=True, slots=True)
class Reason:
    feature: str
    label: str
    contribution: float


@dataclass(frozen=True, slots=True)
class Score:
    lead_id: str
    probability: float
    band: str
    rank: int
    reasons: tuple[Reason, ...]
    model_name: str
    model_version: str


@dataclass(frozen=True, slots=True)
class Summary:
    text: str
    generator: str
    fallback: bool
    fallback_reason: str
    cited_note_ids: tuple[str, ...]
    score: Score | None = None
    final: pb.SummaryFinal = field(default_factory=pb.SummaryFinal, repr=False)


class LeadClient:
    """A client for one gateway or a fleet of them. Thread-safe; close it when done.

    ``target``: ``"host:port"``, ``"dns:///name:port"`` (every replica of a headless Service,
    balanced round-robin) or a list of IP ``host:port`` addresses.
    """

    def __init__(
        self,
        target: str | Sequence[str],
        *,
        api_key: str | None = None,
        tls: Tls | None = None,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        options: Sequence[tuple[str, str | int]] = (),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._channel = open_channel(target, tls, options)
        self._stub = pb_grpc.LeadServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._timeout_s = timeout_s
        self._retry = retry or RetryPolicy()
        self._rng = random.Random()
        self._sleep = sleep

    def __enter__(self) -> LeadClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def score(
        self,
        leads: Leads,
        *,
        model: str = "",
        version: str = "",
        max_reasons: int = 0,
        timeout_s: float | None = None,
    ) -> list[Score]:
        """Scores leads (``{lead_id: {feature: value}}``; None means missing), in request
        order; ``rank`` 1 is the lead to call first."""
        items = leads.items() if isinstance(leads, Mapping) else leads
        request = pb.ScoreLeadsRequest(
            leads=[_lead(lead_id, features) for lead_id, features in items],
            model_name=model,
            model_version=version,
            max_reasons=max_reasons,
        )
        response = self._call(
            lambda remaining: self._stub.ScoreLeads(
                request, timeout=remaining, metadata=self._metadata
            ),
            timeout_s,
        )
        return [_score(s) for s in response.scores]

    def summarize(
        self,
        lead_id: str,
        *,
        on_text: Callable[[str], None] | None = None,
        timeout_s: float | None = 30.0,
    ) -> Summary:
        """The lead's summary; ``on_text`` sees each piece of text as it streams in. A refusal
        before any text arrived is retried; a stream cut after text is not (it would repeat)."""
        request = pb.SummarizeLeadRequest(lead_id=lead_id)

        def attempt(remaining: float) -> Summary:
            pieces: list[str] = []
            stream: Iterator[pb.SummarizeLeadResponse] = self._stub.SummarizeLead(
                request, timeout=remaining, metadata=self._metadata
            )
            final = None
            try:
                for message in stream:
                    if message.WhichOneof("event") == "text":
                        pieces.append(message.text)
                        if on_text is not None:
                            on_text(message.text)
                    else:
                        final = message.final
            except grpc.RpcError as error:
                if pieces:
                    raise _NotRetryable(error) from error
                raise
            if final is None:
                raise RuntimeError(f"the summary stream of {lead_id!r} ended without its final")
            return Summary(
                text="".join(pieces),
                generator=final.generator,
                fallback=final.fallback,
                fallback_reason=final.fallback_reason,
                cited_note_ids=tuple(c.note_id for c in final.citations),
                score=_score(final.score) if final.HasField("score") else None,
                final=final,
            )

        try:
            return self._call(attempt, timeout_s)
        except _NotRetryable as wrapped:
            raise wrapped.error from None

    def _call(self, attempt: Callable[[float], _T], timeout_s: float | None) -> _T:
        """Runs ``attempt(remaining_s)`` until it succeeds, fails for good, or the deadline
        (``timeout_s``, else the client's) leaves no time for the wait before another try."""
        deadline = time.monotonic() + (self._timeout_s if timeout_s is None else timeout_s)
        tries = 0
        while True:
            tries += 1
            try:
                return attempt(max(0.001, deadline - time.monotonic()))
            except grpc.RpcError as error:
                if error.code() not in RETRYABLE or tries >= self._retry.max_attempts:
                    raise
                wait = server_delay_s(error.trailing_metadata())
                if wait is None:
                    wait = self._retry.backoff_s(tries, self._rng)
                if time.monotonic() + wait >= deadline:
                    raise
                self._sleep(wait)


class _NotRetryable(Exception):
    def __init__(self, error: grpc.RpcError) -> None:
        super().__init__(str(error))
        self.error = error


def _lead(lead_id: str, features: Mapping[str, FeatureValue]) -> pb.Lead:
    lead = pb.Lead(lead_id=lead_id)
    for name, value in features.items():
        if value is None:
            continue  # missing: the model's schema says what that means
        if isinstance(value, bool):
            lead.features[name].flag = value
        elif isinstance(value, int | float):
            lead.features[name].number = float(value)
        elif isinstance(value, str):
            lead.features[name].category = value
        else:
            raise TypeError(
                f"lead {lead_id!r}: feature {name!r} must be a number, a string, a bool or "
                f"None, not {type(value).__name__}"
            )
    return lead


def _score(score: pb.LeadScore) -> Score:
    return Score(
        lead_id=score.lead_id,
        probability=score.probability,
        band=_BANDS.get(score.band, "unspecified"),
        rank=score.rank,
        reasons=tuple(Reason(r.feature, r.label, r.contribution) for r in score.reasons),
        model_name=score.model_name,
        model_version=score.model_version,
    )
