"""Why an LLM call failed, in words a fallback summary can report."""

from __future__ import annotations


class LLMFailure(Exception):
    """The LLM could not produce (the rest of) a completion.

    ``reason`` is a short, stable code (``timeout``, ``http_503``, ``rate_limited``,
    ``stream_cut``, ``malformed_chunk``, ``breaker_open``, ...) that ends up in the summary's
    ``fallback_reason``; ``detail`` is for logs.
    """

    def __init__(
        self,
        reason: str,
        detail: str = "",
        *,
        retryable: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.retry_after_s = retry_after_s
