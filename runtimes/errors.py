"""Domain errors. Each names the gRPC status it maps to, as a string, so that the transport-free
packages (``runtimes``, ``retrieval``) never import gRPC. ``gateway.errors`` maps them in one place.
"""

from __future__ import annotations


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters: how a message quotes what a client sent. A
    status message travels in a header that clients cap (grpc: 8 KiB soft, 16 KiB hard), so a
    value echoed whole would turn the client's error into RESOURCE_EXHAUSTED."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class LeadgwError(Exception):
    """Base of every error a client may see. ``status`` is a ``grpc.StatusCode`` name."""

    status = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(LeadgwError):
    """The request is malformed: which lead or tensor, which field, what was wrong."""

    status = "INVALID_ARGUMENT"


class NotFound(LeadgwError):
    status = "NOT_FOUND"


class Unauthenticated(LeadgwError):
    status = "UNAUTHENTICATED"


class PermissionDenied(LeadgwError):
    status = "PERMISSION_DENIED"


class ResourceExhausted(LeadgwError):
    """A bounded queue or limit is full. ``retry_after_s`` is sent back as a hint."""

    status = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(LeadgwError):
    status = "DEADLINE_EXCEEDED"


class Unavailable(LeadgwError):
    """Not ready (a model still loading, a store down); the client may retry."""

    status = "UNAVAILABLE"


class FailedPrecondition(LeadgwError):
    status = "FAILED_PRECONDITION"
