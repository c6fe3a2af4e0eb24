"""The project's error tree.

`ExchangeError` is the root of every error the platform raises on purpose. It covers:

- `ConfigError`: settings missing, malformed or a placeholder secret outside `ENV=local`.
- `ProblemError` and its children: errors that map to an HTTP status and an RFC 9457
  `application/problem+json` body (bad request, unauthorized, forbidden, not found, conflict,
  payload too large, unsupported media type, unprocessable, unavailable).
- `DependencyError`: an engine (Postgres, S3, Kafka, tokenizer) is unreachable; transient.
- `PoisonError`: a message that will never succeed (invalid, unmappable, checksum mismatch).

Messages are written for the caller and must never contain PII or raw payload values: wrap
outside exceptions with `raise XError("what failed") from exc`, never `str(exc)` of a parser
that may echo input.
"""

from __future__ import annotations

from typing import Any, ClassVar

MAX_DETAIL = 300
"""Error text is capped so a chain of messages cannot smuggle a payload out."""


def cap(text: str, limit: int = MAX_DETAIL) -> str:
    """Cap error text at `limit` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ExchangeError(Exception):
    """Root of the platform's own errors."""


class ConfigError(ExchangeError):
    """Settings are missing, malformed, or unsafe for the environment."""


class DependencyError(ExchangeError):
    """An engine or a peer service is unavailable; retry later."""

    def __init__(self, dependency: str, message: str = "unavailable") -> None:
        super().__init__(f"{dependency}: {cap(message)}")
        self.dependency = dependency


class PoisonError(ExchangeError):
    """A message that can never be processed; it goes to a dead-letter queue."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(cap(message))
        self.error_class = error_class


class ProblemError(ExchangeError):
    """An error with an HTTP status, rendered as application/problem+json (RFC 9457)."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"
    type_slug: ClassVar[str] = "internal"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.detail = cap(detail or self.title)
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(self.detail)

    def to_problem(self, instance: str | None = None, correlation_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://exchange.dev/problems/{self.type_slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if correlation_id:
            body["correlation_id"] = correlation_id
        body.update(self.extra)
        return body


class BadRequest(ProblemError):
    status, title, type_slug = 400, "Bad Request", "bad-request"


class Unauthorized(ProblemError):
    status, title, type_slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        super().__init__(detail, **kw)


class Forbidden(ProblemError):
    status, title, type_slug = 403, "Forbidden", "forbidden"


class Conflict(ProblemError):
    status, title, type_slug = 409, "Conflict", "conflict"


class PayloadTooLarge(ProblemError):
    status, title, type_slug = 413, "Content Too Large", "payload-too-large"


class UnsupportedMediaType(ProblemError):
    status, title, type_slug = 415, "Unsupported Media Type", "unsupported-media-type"


class Unprocessable(ProblemError):
    """422. `errors` lists JSON pointers and schema keywords, never the offending values."""

    status, title, type_slug = 422, "Unprocessable Content", "unprocessable"


class ServiceUnavailable(ProblemError):
    status, title, type_slug = 503, "Service Unavailable", "unavailable"

    def __init__(self, detail: str | None = None, retry_after: int = 5, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": str(retry_after)})
        super().__init__(detail, **kw)
