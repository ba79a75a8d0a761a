"""The pieces of the summary pipeline on their own: citation filter, PII masking, breaker,
Retry-After, cache, tenant limiter, fallback text."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from summary_helpers import ManualClock, note

from retrieval.summary import SummaryCache, TenantLimiter
from retrieval.summary.cache import CachedSummary, CacheKey, feature_snapshot
from retrieval.summary.citations import CitationFilter
from retrieval.summary.fallback import fallback_summary
from runtimes.errors import ResourceExhausted
from runtimes.llm import BreakerState, CircuitBreaker, mask_pii, should_mask
from runtimes.llm.pii import luhn_ok
from runtimes.llm.retry import backoff_delay, parse_retry_after
from runtimes.types import Band, LeadScore, Reason

TEXT = "Retiring [1]. Invented [7]. Both [2, 9]. Gone [12]. Kept [3]. Plain [x] and [] too."
EXPECTED = "Retiring [1]. Invented. Both [2]. Gone. Kept [3]. Plain [x] and [] too."


def run_filter(pieces: list[str]) -> tuple[str, CitationFilter]:
    f = CitationFilter(range(1, 4))
    out = "".join(f.feed(p) for p in pieces) + f.flush()
    return out, f


def test_citation_filter_whole_text():
    out, f = run_filter([TEXT])
    assert out == EXPECTED
    assert f.cited == {1, 2, 3} and f.removed == 3


@pytest.mark.parametrize("cut", range(1, len(TEXT)))
def test_citation_filter_gives_the_same_text_wherever_the_stream_splits(cut):
    out, f = run_filter([TEXT[:cut], TEXT[cut:]])
    assert out == EXPECTED and f.removed == 3


def test_citation_filter_character_by_character():
    out, f = run_filter(list(TEXT))
    assert out == EXPECTED and f.cited == {1, 2, 3}


def test_citation_filter_drops_an_unfinished_marker_at_the_end():
    out, f = run_filter(["Cut off by the token limit [", "2"])
    assert out == "Cut off by the token limit" and f.removed == 1 and f.cited == set()


def test_citation_filter_releases_plain_brackets_it_held():
    out, _ = run_filter(["a list [", "see below]"])
    assert out == "a list [see below]"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("mail jane.doe@example.co.uk today", "email"),
        ("card 4111-1111-1111-1111", "card"),
        ("card 5500 0000 0000 0004", "card"),
        ("ssn 123-45-6789", "national_id"),
        ("NI number AB 12 34 56 C", "national_id"),
        ("NI AB123456C", "national_id"),
        ("IBAN GB82 WEST 1234 5698 7654 32", "account"),
        ("acct #: 9876-5432-10", "account"),
        ("call +1 415 555 0123", "phone"),
        ("call (415) 555-0123", "phone"),
        ("call 020 7946 0958", "phone"),
    ],
)
def test_pii_kinds_are_masked(text, kind):
    result = mask_pii(text)
    assert result.counts == {kind: 1}
    assert f"[{kind.upper()}]" in result.text


@pytest.mark.parametrize(
    "text",
    [
        "met on 2024-05-01, wants 250,000 in 2025",
        "portfolio of 1,200,000 USD, 3 children, 401k, age 61",
        "card-like 4111 1111 1111 1112 fails the Luhn check",
        "reference [3] and 12.5% allocation",
    ],
)
def test_ordinary_numbers_are_left_alone(text):
    assert mask_pii(text).counts == {}
    assert mask_pii(text).text == text


def test_luhn():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")


@pytest.mark.parametrize(
    ("mode", "url", "masked"),
    [
        ("auto", "http://127.0.0.1:8080/v1", False),
        ("auto", "http://localhost:8080/v1", False),
        ("auto", "http://[::1]:8080/v1", False),
        ("auto", "https://api.example.com/v1", True),
        ("auto", "http://10.0.0.5/v1", True),
        ("on", "http://127.0.0.1:8080/v1", True),
        ("off", "https://api.example.com/v1", False),
        ("auto", None, False),
    ],
)
def test_masking_decision(mode, url, masked):
    assert should_mask(mode, url) is masked


def test_breaker_state_machine():
    clock = ManualClock()
    breaker = CircuitBreaker(3, 10.0, clock=clock)
    for _ in range(2):
        assert breaker.try_acquire()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_success()  # consecutive failures only
    for _ in range(3):
        assert breaker.try_acquire()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.try_acquire()

    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.try_acquire()
    assert not breaker.try_acquire()  # one trial at a time
    breaker.release()  # the trial's caller went away: another may try
    assert breaker.try_acquire()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.consecutive_failures == 0


def test_retry_after_parsing():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:07 GMT", now=now) == 7.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("-4") == 0.0


def test_backoff_grows_and_honours_retry_after():
    rng = random.Random(1)
    assert backoff_delay(1, 2.5, rng) == 2.5
    first = [backoff_delay(1, None, rng) for _ in range(50)]
    third = [backoff_delay(3, None, rng) for _ in range(50)]
    assert max(first) <= 0.2 < min(third) * 2 and max(third) <= 0.8


def _score() -> LeadScore:
    return LeadScore("l", 0.3, Band.WARM, 1, -0.8, -1.0, [Reason("age", "Over 60", -0.2)])


def test_fallback_cites_recent_lead_notes_not_documents_and_defuses_brackets():
    sources = [
        note("b", "l", 9, "Newest [5] with a bracket."),
        note("d", "", 10, "A firm document.", "document"),
        note("a", "l", 3, "x" * 400),
    ]
    text = fallback_summary(_score(), sources, recent=2)
    assert "Over 60 (lowers the odds)" in text and "Conversion score: 30% (warm)." in text
    assert "2024-05-09 call: Newest (5) with a bracket. [1]" in text
    assert text.count("[3]") == 1 and "…" in text and "[2]" not in text


def _key(version: str) -> CacheKey:
    return CacheKey("t", "l", feature_snapshot({"a": 1.0}), ("n",), version, "p", "m", "", "")


def test_cache_is_bounded_lru():
    cache = SummaryCache(2)
    entry = CachedSummary(("x",), result=None)  # type: ignore[arg-type]
    cache.put(_key("1"), entry)
    cache.put(_key("2"), entry)
    assert cache.get(_key("1")) is entry  # now most recently used
    cache.put(_key("3"), entry)
    assert cache.get(_key("2")) is None and cache.get(_key("1")) is entry and len(cache) == 2
    disabled = SummaryCache(0)
    disabled.put(_key("1"), entry)
    assert disabled.get(_key("1")) is None


def test_feature_snapshot_tells_true_from_one():
    assert feature_snapshot({"a": True}) != feature_snapshot({"a": 1.0})
    assert feature_snapshot({"a": 1.0, "b": "x"}) == feature_snapshot({"b": "x", "a": 1.0})


def test_tenant_limiter():
    limiter = TenantLimiter(1)
    with limiter.slot("a"):
        with pytest.raises(ResourceExhausted), limiter.slot("a"):
            pass
        with limiter.slot("b"):
            assert limiter.running("b") == 1
    assert limiter.running("a") == 0
