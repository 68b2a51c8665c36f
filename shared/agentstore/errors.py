"""The one exception hierarchy of agentstore.

    AgentstoreError
    ├── ConfigError            settings missing or malformed; fix the environment
    ├── StackError             the local stack cannot be installed or started
    ├── InvalidMessage         an ingest message can never be stored (dead-letter it)
    ├── LeaseLost              a claimed run was taken away (lease expired, run cancelled)
    ├── RequestError           a request-reply call fails; carries the contract's code
    │   ├── BadRequest         400
    │   ├── Forbidden          403
    │   ├── NotFound           404
    │   ├── Conflict           409
    │   └── Unavailable        503
    └── StoreError             raised by the store adapters, never a driver error
        ├── StoreUnavailable   transient: the database is down or slow; retry later
        │   └── StoreMisconfigured  a fault of the deployment (missing table, column,
        │                      privilege, bucket, login): retried until fixed, and the
        │                      service reports not ready with the reason
        ├── StoreRejected      permanent: the database refuses this data
        └── StoreUnsupported   a read path cannot answer this shape; a slower one will
                               (caught inside the adapter, counted, never raised to callers)

Only data errors are permanent (dead-lettered): everything about the
deployment is retried, so a missed migration never dead-letters a stream.

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


class ContractViolation(AgentstoreError):
    """A reply that does not match the contract's declared shape: the service and this SDK
    disagree on the contract (upgrade the older one); nothing the caller sent is at fault."""


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


class LeaseLost(AgentstoreError):
    """Raised out of `async with client.claim()` when the lease was lost or the run was
    cancelled while the body ran: the body was cancelled, with this reason."""


class Conflict(RequestError):
    code = 409


class Unavailable(RequestError):
    code = 503


class ObjectGone(Unavailable):
    """A presigned URL's object is no longer there (deleted after the reply that named it):
    read again what named it."""


class StoreError(AgentstoreError):
    """Raised by store adapters in place of driver errors."""


class StoreUnavailable(StoreError):
    """Transient: the store cannot be reached or timed out. Retry later."""


class StoreRejected(StoreError):
    """Permanent: the store refuses this data; retrying will not help."""


class StoreMisconfigured(StoreUnavailable):
    """The deployment is wrong (a missing table or bucket, a privilege, a login): retried
    like an outage, and shown in readiness until an operator fixes it."""


class StoreUnsupported(StoreError):
    """A read path of an adapter cannot answer this query shape; the adapter answers it by
    a slower path, counts it and logs the shape once (the FerretDB SQL reader's filters)."""
