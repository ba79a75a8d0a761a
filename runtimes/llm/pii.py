"""Mask personal data in text before it leaves the process for a remote LLM endpoint."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

PiiMode = Literal["auto", "on", "off"]

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
# 13-19 digits, optionally grouped by spaces or dashes; kept only if the Luhn check passes.
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
# US SSN: area 000, 666 and 9xx, group 00 and serial 0000 are never issued.
_SSN = re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")
# UK National Insurance number: two prefix letters (some never used), six digits, A-D.
_UK_NINO = re.compile(
    r"\b(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r"\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]\b",
    re.IGNORECASE,
)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
# A number introduced as an account number ("account no. 12345678", "acct #: 1234-5678").
_ACCOUNT = re.compile(
    r"(?i)(\b(?:account|acct|a/c)(?:\s*(?:no\.?|number|num|#))?\s*[:#]?\s*)(\d[\d -]{4,22}\d)"
)
# Phone numbers need a + prefix, parentheses or separators, and 9-15 digits (see _is_phone).
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{2,5}(?:[ .-]\d{2,5}){1,4}(?!\w)"
)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class MaskResult:
    text: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _is_phone(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    if not 9 <= len(digits) <= 15 or _ISO_DATE.match(candidate):
        return False
    return candidate.startswith("+") or "(" in candidate or bool(re.search(r"[ .-]", candidate))


def mask_pii(text: str) -> MaskResult:
    """Replace personal data with ``[EMAIL]``, ``[CARD]``, ``[NATIONAL_ID]``, ``[ACCOUNT]`` and
    ``[PHONE]``; ``counts`` says how many of each kind were masked."""
    counts: Counter[str] = Counter()

    def sub(pattern: re.Pattern[str], kind: str, keep: Callable[[str], bool] | None = None) -> None:
        nonlocal text

        def replace(m: re.Match[str]) -> str:
            if keep is not None and not keep(m.group(0)):
                return m.group(0)
            counts[kind] += 1
            return f"[{kind.upper()}]"

        text = pattern.sub(replace, text)

    # Order matters: the most specific patterns first, so a card number is not taken for a phone.
    sub(_EMAIL, "email")
    sub(_CARD, "card", lambda s: luhn_ok(re.sub(r"\D", "", s)))
    sub(_SSN, "national_id")
    sub(_UK_NINO, "national_id")
    sub(_IBAN, "account")

    def account(m: re.Match[str]) -> str:
        counts["account"] += 1
        return f"{m.group(1)}[ACCOUNT]"

    text = _ACCOUNT.sub(account, text)
    sub(_PHONE, "phone", _is_phone)
    return MaskResult(text, dict(counts))


def endpoint_is_loopback(base_url: str) -> bool:
    """True when the URL's host is this machine (localhost, 127.0.0.0/8, ::1)."""
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def should_mask(mode: PiiMode, base_url: str | None) -> bool:
    """``auto`` masks only when the endpoint is not on loopback."""
    if mode == "on":
        return True
    if mode == "off" or base_url is None:
        return False
    return not endpoint_is_loopback(base_url)
