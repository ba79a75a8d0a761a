"""The checkable content of a sentence (numbers, amounts, dates, names, product and other domain
terms, negations) and whether its sources support it. Pure functions: no model, no I/O.

A sentence is supported only if every number, month, weekday, name and domain term it holds is
found in its cited notes or in the facts the gateway shows itself; a negation needs a negation
in the sources too, and a word whose opposite the sources hold (and not the word) contradicts
them. Anything else is left to the meaning check (embeddings) in ``guard``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


def _words(text: str) -> list[str]:
    return text.split()


_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_MAY = re.compile(r"\bMay\s+\d|\d(?:st|nd|rd|th)?\s+May\b|\b(?:in|of|early|late|mid-?)\s+May\b")
_NUMBER_ABBREVIATION = re.compile(r"\bno\.\s*(?=\d)", re.I)
_MARKER = re.compile(r"\s*\[\d{1,4}(?:\s*,\s*\d{1,4})*\]")
_TEMPLATE = re.compile(
    r"<<\s*/?SYS\s*>>|\[/?INST\]|<\|[a-z_]+\|>|<\s*/?\s*(?:start_of_turn|end_of_turn|s)\s*>"
    r"|</?note\b",
    re.I,
)

NUMBER_WORDS = {
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
    "hundred": 100, "thousand": 1000, "million": 1_000_000, "twice": 2, "dozen": 12,
}  # fmt: skip
MONTHS = _words(
    "january february march april may june july august september october november december"
)
_MONTH_SHORT = {m[:3]: m for m in MONTHS if m != "may"} | {"sept": "september"}
WEEKDAYS = frozenset(_words("monday tuesday wednesday thursday friday saturday sunday"))
# Domain terms an advisor acts on: a sentence may name one only if its sources do.
DOMAIN_TERMS = frozenset(
    _words(
        """
    isa isas sipp sipps pension pensions annuity annuities mortgage mortgages crypto cryptocurrency
    bitcoin ethereum etf etfs bond bonds gilt gilts equity equities stock stocks share shares fund
    funds insurance loan loans 401k ira roth trust trusts drawdown property properties gold forex
    derivatives options savings deposit deposits portfolio inheritance divorce redundancy
    email e-mail phone telephone letter text sms video zoom whatsapp linkedin
    cautious conservative aggressive adventurous low-risk high-risk ethical esg
    wife husband partner son daughter children grandchildren mother father sister brother
    fee fees commission charge charges rate
    """
    )
)
NEGATIONS = frozenset(
    _words("not no never none nothing neither nor without cannot can't won't don't doesn't didn't")
    + _words("isn't aren't wasn't weren't hasn't haven't declined refused unwilling")
)
# Opposites: a sentence with the left word contradicts sources that hold only the right one.
_OPPOSITES = [
    ("increase", "decrease"), ("increase", "reduce"), ("raise", "lower"), ("buy", "sell"),
    ("accept", "decline"), ("accept", "reject"), ("agree", "refuse"), ("agree", "decline"),
    ("more", "less"), ("higher", "lower"), ("early", "late"), ("before", "after"),
    ("interested", "uninterested"), ("keen", "reluctant"), ("confirmed", "cancelled"),
    ("confirmed", "postponed"), ("retire", "work"), ("single", "married"), ("sooner", "later"),
    ("up", "down"), ("gain", "loss"), ("profit", "loss"), ("open", "closed"),
    ("morning", "evening"), ("morning", "afternoon"), ("steady", "varies"), ("fixed", "varies"),
    ("regular", "irregular"), ("steady", "irregular"), ("regular", "varies"),
]  # fmt: skip

_FILLER = frozenset(
    _words(
        "a an the be is are was were been being to of about any her his their its it them "
        "him she he they yet so very much have has had do does did will would want wants "
        "wanted for on in at by with"
    )
)


def stem(word: str) -> str:
    """A crude suffix stripper (accepted/accepts -> accept, declined -> declin): enough to match
    inflections of the same word between a sentence and a note."""
    for suffix in ("ing", "ed", "es", "s", "e", "d"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


OPPOSITES: dict[str, set[str]] = {}
for _a, _b in _OPPOSITES:
    OPPOSITES.setdefault(stem(_a), set()).add(stem(_b))
    OPPOSITES.setdefault(stem(_b), set()).add(stem(_a))
# Capitalised words that are not names: sentence starters and words of the domain.
COMMON = frozenset(
    _words(
        """
    a an the this that these those she he they it we you i her his their its our your my
    client clients lead leads prospect advisor adviser customer firm team note notes summary
    in on at after before during since as next both also however then there here according
    recent latest last first per for to with no not each follow meeting call email what when
    while if but and or so yet because although though once until from by of about regarding
    overall currently today mr mrs ms dr ai ok
    """
    )
)


@dataclass(frozen=True, slots=True)
class Claims:
    numbers: frozenset[str]
    words: frozenset[str]
    """Every word, lower case."""
    names: frozenset[str]
    terms: frozenset[str]
    dates: frozenset[str]
    """Month and weekday names (short forms expanded)."""
    negated: bool
    negated_words: frozenset[str]
    """The first word each negation applies to, as a four-letter prefix ("no debts" -> "debt")."""
    citations: frozenset[int]
    template_marker: bool


def strip_markers(sentence: str) -> str:
    return _MARKER.sub("", sentence).strip()


def citations_of(sentence: str) -> frozenset[int]:
    return frozenset(int(n) for m in _MARKER.findall(sentence) for n in re.findall(r"\d+", m))


def _number(token: str) -> str:
    value = token.replace(",", "").rstrip(".")
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return value.lstrip("0") or "0"


def _is_negation(word: str) -> bool:
    return word in NEGATIONS or word.endswith("n't")


def _negated_words(words: list[str]) -> set[str]:
    """For each negation, the first word it governs (fillers skipped), as a 4-letter prefix so
    that "decision" and "decided" meet; "rather than" and "instead of" negate too."""
    out: set[str] = set()
    for i, word in enumerate(words):
        pair = " ".join(words[i : i + 2])
        if _is_negation(word) or pair in ("rather than", "instead of"):
            start = i + (2 if pair in ("rather than", "instead of") else 1)
            for follower in words[start : start + 4]:
                if follower not in _FILLER and not _is_negation(follower):
                    out.add(follower[:4])
                    break
            else:
                out.add("")
    return out


def _stem(word: str) -> str:
    word = word.lower().replace("’", "'")
    for suffix in ("'s", "'"):
        word = word.removesuffix(suffix)
    return word


def extract(sentence: str) -> Claims:
    # "account no. 123" is a number, not a negation.
    body = _NUMBER_ABBREVIATION.sub("number ", strip_markers(sentence))
    words = [_stem(w) for w in _WORD.findall(body)]
    numbers = {_number(n) for n in _NUMBER.findall(body)}
    numbers |= {str(NUMBER_WORDS[w]) for w in words if w in NUMBER_WORDS}
    names: set[str] = set()
    raw = _WORD.findall(body)
    for i, token in enumerate(raw):
        word = _stem(token)
        if not token[0].isupper() or word in COMMON or word in MONTHS or word in WEEKDAYS:
            continue
        acronym = len(token) > 1 and token.isupper()
        if i == 0 and not acronym:
            # A capital at the start says nothing; a possessive or a following capital does.
            possessive = token.lower().endswith(("'s", "’s"))
            followed = i + 1 < len(raw) and raw[i + 1][0].isupper()
            if not (possessive or followed):
                continue
        names.add(word)
    negated = _negated_words(words)
    dates = {w for w in words if (w in MONTHS and w != "may") or w in WEEKDAYS}
    if _MAY.search(body):  # the month, not the verb
        dates.add("may")
    dates |= {_MONTH_SHORT[w] for w in words if w in _MONTH_SHORT}
    return Claims(
        numbers=frozenset(numbers),
        words=frozenset(words),
        names=frozenset(names),
        terms=frozenset(w for w in words if w in DOMAIN_TERMS),
        dates=frozenset(dates),
        negated=bool(negated),
        negated_words=frozenset(negated),
        citations=citations_of(sentence),
        template_marker=bool(_TEMPLATE.search(sentence)),
    )


@dataclass(frozen=True, slots=True)
class Support:
    """What a set of sources (cited notes plus the gateway's facts) can back."""

    numbers: frozenset[str]
    words: frozenset[str]
    stems: frozenset[str]
    negated: frozenset[str]
    """What the sources negate (see ``Claims.negated_words``)."""

    @classmethod
    def of(cls, texts: Iterable[str]) -> Support:
        claims = [extract(t) for t in texts]
        words: set[str] = set()
        numbers: set[str] = set()
        for c in claims:
            words |= c.words | c.dates
            numbers |= c.numbers
        negated: set[str] = set()
        for c in claims:
            negated |= c.negated_words
        stems = frozenset(stem(w) for w in words)
        return cls(frozenset(numbers), frozenset(words), stems, frozenset(negated))


def _has(words: frozenset[str], word: str) -> bool:
    if word in words:
        return True
    singular = word.removesuffix("s")
    return singular in words or f"{singular}s" in words


def unsupported(claims: Claims, support: Support) -> str:
    """The reason the sources do not back the sentence's checkable content, or ""."""
    if any(n not in support.numbers for n in claims.numbers):
        return "unsupported_number"
    if any(d not in support.words for d in claims.dates):
        return "unsupported_date"
    if any(not _has(support.words, n) for n in claims.names):
        return "unsupported_name"
    if any(not _has(support.words, t) for t in claims.terms):
        return "unsupported_term"
    # A negation must negate what the sources negate; what the sources negate, the sentence may
    # not assert.
    if any(w not in support.negated for w in claims.negated_words):
        return "contradiction"
    if not claims.negated and any(w[:4] in support.negated for w in claims.words if len(w) > 3):
        return "contradiction"
    for word in claims.words:
        opposites = OPPOSITES.get(stem(word))
        if opposites and stem(word) not in support.stems and opposites & support.stems:
            return "contradiction"
    return ""


def template_marker(text: str) -> bool:
    return bool(_TEMPLATE.search(text))
