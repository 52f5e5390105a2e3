"""The app's one error hierarchy.

Every error the app raises on purpose derives from `DurableAgentError`, carries a stable
`code` (what went wrong, machine-readable) and says whether trying again can help
(`retryable`). HTTP handlers map them to problem details; the orchestration records them on
failed turns.
"""

from __future__ import annotations

import re

_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)
_HOST = re.compile(
    r"\b(?:[a-z0-9-]+\.)+(?:com|net|io|org|azure\.com|windows\.net|ai)\b(?::\d+)?", re.IGNORECASE
)
_ADDRESS = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b")


class DurableAgentError(Exception):
    """Root of every error this app raises deliberately."""

    code: str = "error"
    retryable: bool = False
    http_status: int = 500

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable


class ConfigurationError(DurableAgentError):
    """A setting is missing or invalid; fix the configuration, then retry."""

    code = "configuration_error"
    http_status = 500


class ModelNotConfiguredError(ConfigurationError):
    """No model provider is configured at all."""

    code = "model_not_configured"


class InvalidInputError(DurableAgentError):
    """A request or payload is malformed; the caller must change it."""

    code = "invalid_input"
    http_status = 400


class PayloadTooLargeError(InvalidInputError):
    """A request body or field is larger than allowed."""

    code = "payload_too_large"
    http_status = 413


class UnsupportedMediaTypeError(InvalidInputError):
    """The request body is not in a format the API reads (it reads JSON)."""

    code = "unsupported_media_type"
    http_status = 415


class UnauthorizedError(DurableAgentError):
    """The request carries no signed-in principal where one is required."""

    code = "unauthorized"
    http_status = 401


class NotFoundError(DurableAgentError):
    """The thread (or message) does not exist."""

    code = "not_found"
    http_status = 404


class ConflictError(DurableAgentError):
    """The request clashes with current state (id in use, thread not running)."""

    code = "conflict"
    http_status = 409


class ModelCallError(DurableAgentError):
    """A call to the model failed. `retryable` says whether the failure was transient."""

    code = "model_error"
    http_status = 502


class ModelRejectedError(ModelCallError):
    """The model endpoint rejected the request (400, 401, 403, 404): retrying cannot help."""

    code = "model_rejected"
    retryable = False


class ContentFilteredError(ModelRejectedError):
    """The provider's content filter refused the prompt or the completion."""

    code = "content_filtered"


class ModelUnavailableError(ModelCallError):
    """The model stayed unavailable (429, 5xx, timeouts) through every retry."""

    code = "model_unavailable"
    retryable = True


class BackendUnavailableError(DurableAgentError):
    """The Durable Task backend could not be reached; retry later."""

    code = "backend_unavailable"
    retryable = True
    http_status = 503


def error_for_failure(error_type: str, message: str) -> tuple[str, bool]:
    """Recover (code, retryable) from a failed task's reported type and message.

    Locally the failure carries the Python class name; the Functions host may wrap it in
    its own exception type with the Python class named in the message, so both are read.
    """
    known: dict[str, type[DurableAgentError]] = {}
    pending: list[type[DurableAgentError]] = [DurableAgentError]
    while pending:
        cls = pending.pop()
        known[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    short_type = error_type.rsplit(".", 1)[-1]
    if short_type in known:
        found = known[short_type]
        return found.code, found.retryable
    # Longest names first so "ModelCallError" does not shadow "ModelRejectedError".
    for name in sorted(known, key=len, reverse=True):
        if name in message:
            return known[name].code, known[name].retryable
    return ModelCallError.code, False


def public_message(message: str) -> str:
    """`message` fit for an API caller: endpoints, host names and addresses removed (the
    full detail stays in the host's log)."""
    text = _URL.sub("the model endpoint", message)
    text = _HOST.sub("the model endpoint", text)
    return _ADDRESS.sub("the model endpoint", text)
