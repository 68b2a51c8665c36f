"""The one exception hierarchy of agentstore.

    AgentstoreError
    ├── ConfigError            settings missing or malformed; fix the environment
    ├── StackError             the local stack cannot be installed or started
    ├── InvalidMessage         an ingest message can never be stored (dead-letter it)
    ├── RequestError           a request-reply call fails; carries the contract's code
    │   ├── BadRequest         400
    │   ├── Forbidden          403
    │   ├── NotFound           404
    │   ├── Conflict           409
    │   └── Unavailable        503
    └── StoreError             raised by the store adapters, never a driver error
        ├── StoreUnavailable   transient: the database is down or slow; retry later
        └── StoreRejected      permanent: the database refuses this data

Adapters convert driver errors (pymongo, asyncpg, minio) at their edge with
``raise ... from exc`` so callers can tell transient from permanent.
"""

from __future__ import annotations


class AgentstoreError(Exception):
    """Root of every error agentstore raises on purpose."""


class ConfigError(AgentstoreError):
    """Settings are missing or malformed."""


class StackError(AgentstoreError):
    """A server of the local stack cannot be installed or started."""


class InvalidMessage(AgentstoreError):
    """An ingest message that can never be stored; its text is the Dead-Reason."""


class RequestError(AgentstoreError):
    """A request-reply failure with the contract's status code."""

    code = 500

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(RequestError):
    code = 400


class Forbidden(RequestError):
    code = 403


class NotFound(RequestError):
    code = 404


class Conflict(RequestError):
    code = 409


class Unavailable(RequestError):
    code = 503


class StoreError(AgentstoreError):
    """Raised by store adapters in place of driver errors."""


class StoreUnavailable(StoreError):
    """Transient: the store cannot be reached or timed out. Retry later."""


class StoreRejected(StoreError):
    """Permanent: the store refuses this data; retrying will not help."""
