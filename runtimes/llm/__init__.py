"""OpenAI-compatible LLM client: streaming, retries before the first token, circuit breaker,
PII masking. Transport-free (no gRPC)."""

from runtimes.llm.breaker import BreakerState, CircuitBreaker
from runtimes.llm.client import (
    ChatEvent,
    ChatMessage,
    LLMClient,
    LLMConfig,
    StreamDone,
    TextDelta,
    TokenUsage,
)
from runtimes.llm.errors import LLMFailure
from runtimes.llm.pii import MaskResult, PiiMode, mask_pii, should_mask

__all__ = [
    "BreakerState",
    "ChatEvent",
    "ChatMessage",
    "CircuitBreaker",
    "LLMClient",
    "LLMConfig",
    "LLMFailure",
    "MaskResult",
    "PiiMode",
    "StreamDone",
    "TextDelta",
    "TokenUsage",
    "mask_pii",
    "should_mask",
]
