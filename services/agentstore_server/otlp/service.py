"""The otlp service: OTLP/HTTP (`/v1/traces`, `/v1/logs`, `/v1/metrics`, protobuf or
JSON, gzip or not) in; agents' events, logs and metric points out, through JetStream.

An agent instrumented with the OpenTelemetry SDK points its OTLP exporter here
(`OTEL_EXPORTER_OTLP_ENDPOINT=$OTLP_URL`) and changes no code. The reply is
sent once every item of the export is acknowledged by JetStream (fsynced), so a
200 means stored-or-will-be, as a PubAck does; a 503 makes the exporter retry
the batch, which the derived ids deduplicate. Items that break the contract
are refused in the reply's `partial_success` and the rest are kept.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from contextlib import AsyncExitStack
from typing import Any

import msgspec
from aiohttp import web
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from agentstore.errors import AgentstoreError, BadRequest, InvalidMessage, Unavailable
from agentstore.schemas.common import decode_message
from agentstore_server.bus.handle import BusHandle
from agentstore_server.config import Settings
from agentstore_server.lifecycle.runner import ServiceSpec, Wiring
from agentstore_server.otlp.auth import ExportAuth, Refused, Unauthorized
from agentstore_server.otlp.mapping import MAPPERS, Item, parse

log = logging.getLogger("agentstore.otlp")
MAX_BODY = 32 * 1024 * 1024  # an export as sent, and as decompressed
RESPONSES: dict[str, tuple[Any, str]] = {"traces": (ExportTraceServiceResponse, "rejected_spans"),
             "logs": (ExportLogsServiceResponse, "rejected_log_records"),
             "metrics": (ExportMetricsServiceResponse, "rejected_data_points")}  # fmt: skip


class Receiver:
    def __init__(self, settings: Settings, bus: BusHandle, auth: ExportAuth | None = None) -> None:
        self.settings = settings
        self.bus = bus
        self.auth = auth
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def serve(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.add_routes([web.post("/v1/{signal:traces|logs|metrics}", self.export)])
        # aiohttp would inflate a gzip body itself, unbounded before client_max_size looks
        # (a 2 KB gzip of gzip of 1 GiB is 1 GiB in memory): `decompress` does it, bounded.
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.otlp_host, self.settings.otlp_port, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.otlp_port
        log.info("OTLP/HTTP receiver on http://%s:%s", self.settings.otlp_host, self.port)
        try:
            await asyncio.Event().wait()
        finally:
            await self._runner.cleanup()

    async def ready(self) -> None:
        if self.port is None:
            raise ConnectionError("the OTLP receiver is not listening yet")

    async def export(self, request: web.Request) -> web.Response:
        signal = request.match_info["signal"]
        content_type = request.content_type or ""
        as_json = content_type.startswith("application/json")
        try:
            # The token's presence before any work; what it is bound to once the agents are known.
            token = self.auth.token_of(request.headers.get("Authorization", "")) if self.auth else None
            body = decompress(await request.read(), request.headers.get("Content-Encoding", ""))
            items = list(MAPPERS[signal](parse(signal, body, content_type)))
            if self.auth is not None and token is not None:
                await self.auth.check(token, {item.agent for item in items})
            kept, refused = checked(items)
            await self.publish(kept)
        except Unauthorized as exc:
            log.info("an export without a token refused: %s", exc)
            return error(401, str(exc), as_json, authenticate=True)
        except Refused as exc:
            log.warning("an export refused: %s", exc)
            return error(403, str(exc), as_json)
        except TooLarge as exc:
            return error(413, str(exc), as_json)
        except BadRequest as exc:
            return error(400, str(exc), as_json)
        except (Unavailable, AgentstoreError, TimeoutError) as exc:
            # Retryable for an OTLP exporter: the same batch again is deduplicated.
            return error(503, f"not stored, retry: {exc}", as_json, retry_after="2")
        response_type, rejected_field = RESPONSES[signal]
        response: Any = response_type()
        if refused:
            setattr(response.partial_success, rejected_field, len(refused))
            response.partial_success.error_message = "; ".join(refused[:5])[:2000]
        if as_json:
            return web.json_response(json_format.MessageToDict(response))
        return web.Response(body=response.SerializeToString(), content_type="application/x-protobuf")

    async def publish(self, items: list[Item]) -> None:
        acks = [
            await self.bus.publish(f"agents.{item.agent}.{item.kind}", item.body, item.msg_id)
            for item in items
        ]
        if acks:
            await asyncio.wait_for(asyncio.gather(*acks), timeout=30)


def checked(items: list[Item]) -> tuple[list[Item], list[str]]:
    """Items that pass their ingest body's validation, and why the others' records do not
    (a field over its limit, an id the contract refuses): those are refused here, not
    dead-lettered. A record (one span: its span, event and token metrics) is kept or refused
    whole, so the reply counts what the exporter sent, once each."""
    # Each item's record: its span's index, or the item's own (a tuple, never a span's).
    records: list[int | tuple[int]] = [
        i.record if i.record is not None else (n,) for n, i in enumerate(items)
    ]
    reasons: dict[int | tuple[int], str] = {}  # the refused records and why
    for item, record in zip(items, records, strict=True):
        if record in reasons:
            continue
        try:
            # The very check the storing service applies, so nothing refused here is dead-lettered there.
            decode_message(msgspec.json.encode(item.body), type(item.body))
        except InvalidMessage as exc:
            reasons[record] = f"{item.kind} of {item.agent}: {exc}"
    kept = [item for item, record in zip(items, records, strict=True) if record not in reasons]
    return kept, list(reasons.values())


class TooLarge(BadRequest):
    """An export past MAX_BODY once decompressed."""


# Content-Encoding -> zlib's wbits: gzip's header, or zlib's (what HTTP calls deflate).
WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decompress(body: bytes, encoding: str, limit: int = MAX_BODY) -> bytes:
    """The export as sent, inflated once and never past `limit` bytes (what the exporter
    compressed; a body compressed twice is not an OTLP message and gets a 400)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in WBITS:
        raise BadRequest(f"Content-Encoding {encoding!r}: send gzip, deflate or none")
    inflater = zlib.decompressobj(WBITS[encoding])
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"the body is not valid {encoding}: {exc}") from None
    if len(out) > limit:
        raise TooLarge(
            f"the export is over {limit // (1024 * 1024)} MiB decompressed: split it into smaller batches"
        )
    if not inflater.eof:
        raise BadRequest(f"the body is not valid {encoding}: it ends before the compressed stream does")
    return out


def error(
    status: int, message: str, as_json: bool, retry_after: str | None = None, authenticate: bool = False
) -> web.Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    if authenticate:
        headers["WWW-Authenticate"] = 'Bearer realm="agentstore-otlp"'
    # OTLP/HTTP errors are a google.rpc.Status; its `message` is what exporters log.
    # INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED, else UNAVAILABLE
    code = {400: 3, 401: 16, 403: 7, 413: 8}.get(status, 14)
    payload: dict[str, Any] = {"code": code, "message": message}
    return (
        web.json_response(payload, status=status, headers=headers)
        if as_json
        else web.Response(text=message, status=status, headers=headers)
    )


async def build(settings: Settings, stack: AsyncExitStack) -> Wiring:
    bus = BusHandle()
    auth = ExportAuth.from_settings(settings)
    if auth is None:
        log.warning("OTLP exports need no token (no AGENTSTORE_ENROLLMENT_TOKEN or IDENTITY_K8S_ISSUER "
                    "set): any client that reaches the port may export for any agent")  # fmt: skip
    else:
        await auth.open()
    receiver = Receiver(settings, bus, auth)
    return Wiring(background=[receiver.serve], bus=bus, checks={"http": receiver.ready})


SPEC = ServiceSpec(name="otlp", build=build)
