"""OTLP (traces, logs, metrics) → agentstore's events, logs and metric points.

An agent is named by its resource: `gen_ai.agent.id`, else `agent.id`, else
`service.instance.id`, else `service.name` (the first that is a valid agent
id). Every id is derived from the data (trace and span ids, timestamps), so
an exporter's retry of the same batch is deduplicated by JetStream and the
services, as any agent's publish is.

- a span → an audit event `type` = its GenAI operation (`gen_ai.operation.name`:
  `invoke_agent`, `execute_tool`, `chat` ...) or `span`, with `trace_id`,
  `span_id` and a payload of name, kind, parent, start, end, duration, status
  and every attribute (model, `gen_ai.usage.*` tokens, tool name ...); its
  token counts also become points of the `gen_ai.usage.input_tokens` /
  `gen_ai.usage.output_tokens` series;
- a span → also a span of its trace (`agents.{agent}.spans`, CONTRACT v1.12), what
  `query.traces`, `query.trace` and the console's trace page read;
- a log record → a log: level from its severity, message from its body, its
  attributes as fields, its trace and span ids;
- a gauge or sum point → a point of the metric's series (attributes as tags);
  a histogram point → `{name}.count` and `{name}.sum`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

import msgspec
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from agentstore.errors import BadRequest
from agentstore.schemas.common import AGENT_ID_PATTERN, Level, nest_keys
from agentstore.schemas.logs import EventIn, LogIn
from agentstore.schemas.metrics import MetricIn
from agentstore.schemas.traces import MAX_SPAN_EVENTS, SpanEvent, SpanIn, SpanKind, SpanStatus, span_msg_id

REQUESTS: dict[str, Any] = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}
AGENT_KEYS = ("gen_ai.agent.id", "agent.id", "service.instance.id", "service.name")
GENAI_TAGS = ("gen_ai.request.model", "gen_ai.tool.name", "gen_ai.operation.name")
TOKEN_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")
SPAN_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
STATUS = {0: "unset", 1: "ok", 2: "error"}
_AGENT = re.compile(AGENT_ID_PATTERN)
_ID_KEYS = ("traceId", "spanId", "parentSpanId")
MAX_MESSAGE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Item:
    """One message to publish: `agents.{agent}.{kind}`, deduplicated by `msg_id`."""

    agent: str
    kind: str
    body: msgspec.Struct
    # The span of the export it came from (a span gives a span, an event and token metrics):
    # kept or refused whole, and counted once. None: the item is its record alone.
    record: int | None = None

    @property
    def msg_id(self) -> str:
        if isinstance(self.body, SpanIn):
            return f"{self.agent}:{span_msg_id(self.body.trace_id, self.body.span_id)}"
        return f"{self.agent}:{getattr(self.body, 'id')}"  # noqa: B009


# -- decoding the request -----------------------------------------------------------


def parse(signal: str, body: bytes, content_type: str) -> Any:
    """The export request of `signal` (traces, logs, metrics) from protobuf or OTLP JSON."""
    request: Any = REQUESTS[signal]()
    try:
        if content_type.startswith("application/json"):
            # OTLP JSON writes trace and span ids in hex; protobuf's JSON mapping wants base64.
            json_format.ParseDict(_ids_to_base64(msgspec.json.decode(body)), request)
        elif content_type in ("application/x-protobuf", "application/protobuf", ""):
            request.ParseFromString(body)
        else:
            raise BadRequest(
                f"content type {content_type!r}: send application/x-protobuf or application/json"
            )
    except (json_format.ParseError, msgspec.DecodeError, ValueError, TypeError) as exc:
        raise BadRequest(f"not an OTLP {signal} export request: {exc}") from None
    except Exception as exc:  # protobuf's DecodeError has no stable import path
        if type(exc).__name__ == "DecodeError":
            raise BadRequest(f"not an OTLP {signal} export request: {exc}") from None
        raise
    return request


def _ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str) and value:
                try:
                    value = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise BadRequest(f"{key} {value!r} is not hex") from None
            out[key] = _ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_ids_to_base64(v) for v in node]
    return node


# -- values ---------------------------------------------------------------------------


def value_of(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [value_of(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return attributes(v.kvlist_value.values)
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, which)


def attributes(kvs: Any) -> dict[str, Any]:
    """Flat, as OpenTelemetry keys them (`gen_ai.usage.input_tokens`)."""
    return {kv.key: value_of(kv.value) for kv in kvs}


def stored(flat: dict[str, Any]) -> dict[str, Any]:
    """As agentstore stores them: nested by the dots (document keys hold no '.')."""
    return nest_keys(flat)


def agent_of(resource: Resource) -> str:
    attrs = attributes(resource.attributes)
    for key in AGENT_KEYS:
        value = attrs.get(key)
        if isinstance(value, str) and _AGENT.match(value):
            return value
    named = {k: attrs[k] for k in AGENT_KEYS if k in attrs}
    raise BadRequest(
        f"no agent id in the resource {named or '(none of ' + ', '.join(AGENT_KEYS) + ')'}: set the "
        "resource attribute gen_ai.agent.id (or service.name) to the agent's id, "
        "[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
    )


def at(unix_nano: int) -> datetime | None:
    return datetime.fromtimestamp(unix_nano / 1e9, UTC) if unix_nano else None


def level_of(severity: int, text: str) -> Level:
    if severity:
        if severity >= 21:
            return "critical"
        if severity >= 17:
            return "error"
        if severity >= 13:
            return "warning"
        if severity >= 9:
            return "info"
        return "debug"
    named = text.lower()
    return {"warn": "warning", "fatal": "critical", "trace": "debug"}.get(named, named)  # type: ignore[return-value]


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]


# -- mapping ----------------------------------------------------------------------------


def spans(request: ExportTraceServiceRequest) -> Iterator[Item]:
    record = 0
    for resource_spans in request.resource_spans:
        agent = agent_of(resource_spans.resource)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                record += 1
                trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
                attrs = attributes(span.attributes)
                start, end = at(span.start_time_unix_nano), at(span.end_time_unix_nano)
                duration = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
                payload: dict[str, Any] = {
                    "name": span.name,
                    "kind": SPAN_KINDS.get(span.kind, str(span.kind)),
                    "parent_span_id": span.parent_span_id.hex() or None,
                    "start": start.isoformat() if start else None,
                    "end": end.isoformat() if end else None,
                    "duration_ms": round(duration, 3),
                    "status": STATUS.get(span.status.code, str(span.status.code)),
                    "status_message": span.status.message or None,
                    "attributes": stored(attrs),
                    "scope": scope_spans.scope.name or None,
                }
                if span.events:
                    payload["events"] = [
                        {"name": e.name, "attributes": stored(attributes(e.attributes)),
                         "ts": (at(e.time_unix_nano) or end or start or datetime.now(UTC)).isoformat()}
                        for e in span.events
                    ]  # fmt: skip
                if start is not None:
                    yield Item(
                        agent, "spans", span_in(span, trace_id, span_id, start, end or start, payload), record
                    )
                operation = attrs.get("gen_ai.operation.name")
                event_type = operation if isinstance(operation, str) and operation else "span"
                yield Item(agent, "events", EventIn(
                    id=f"span-{trace_id}-{span_id}", type=event_type[:256], ts=end or start,
                    payload={k: v for k, v in payload.items() if v is not None},
                    trace_id=trace_id, span_id=span_id,
                ), record)  # fmt: skip
                for key in TOKEN_KEYS:
                    tokens = attrs.get(key)
                    if isinstance(tokens, int | float):
                        tags: dict[str, Any] = {k: attrs[k] for k in GENAI_TAGS if k in attrs}
                        yield Item(agent, "metrics", MetricIn(
                            id=f"tok-{span_id}-{key.rsplit('.', 1)[-1]}", name=key, value=float(tokens),
                            ts=end or start, tags=stored({**tags, "trace_id": trace_id, "span_id": span_id}),
                        ), record)  # fmt: skip


def span_in(
    span: Any, trace_id: str, span_id: str, start: datetime, end: datetime, payload: Mapping[str, Any]
) -> SpanIn:
    """The span as `agents.{agent}.spans` takes it (the trace view's row); a kind OTLP leaves
    unspecified is internal, and an end before the start (a clock step) is the start."""
    kind: SpanKind = payload["kind"] if payload["kind"] in get_args(SpanKind) else "internal"
    status: SpanStatus = payload["status"] if payload["status"] in get_args(SpanStatus) else "unset"
    events = [
        SpanEvent(name=e["name"][:256] or "event", ts=datetime.fromisoformat(e["ts"]),
                  attributes=e["attributes"] or None)
        for e in payload.get("events", [])[:MAX_SPAN_EVENTS]
    ]  # fmt: skip
    parent = payload["parent_span_id"]
    message = payload["status_message"]
    return SpanIn(
        trace_id=trace_id, span_id=span_id, name=(span.name or "span")[:256], start=start,
        end=max(end, start), parent_span_id=parent if parent != span_id else None, kind=kind,
        status=status, status_message=message[:4096] if message else None,
        attributes=payload["attributes"] or None, events=events or None,
    )  # fmt: skip


def logs(request: ExportLogsServiceRequest) -> Iterator[Item]:
    for resource_logs in request.resource_logs:
        agent = agent_of(resource_logs.resource)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                body = value_of(record.body)
                message = body if isinstance(body, str) else msgspec.json.encode(body).decode()
                ts = at(record.time_unix_nano) or at(record.observed_time_unix_nano)
                fields = stored(attributes(record.attributes))
                if record.event_name:
                    fields["event_name"] = record.event_name
                if scope_logs.scope.name:
                    fields["scope"] = scope_logs.scope.name
                trace_id, span_id = record.trace_id.hex() or None, record.span_id.hex() or None
                key = _digest(
                    record.time_unix_nano, record.observed_time_unix_nano, trace_id, span_id, message
                )
                level = level_of(record.severity_number, record.severity_text)
                if level not in ("debug", "info", "warning", "error", "critical"):
                    level = "info"
                yield Item(agent, "logs", LogIn(
                    id=f"otel-{key}", level=level, message=message[:MAX_MESSAGE], ts=ts,
                    fields=fields or None, trace_id=trace_id, span_id=span_id,
                ))  # fmt: skip


def metrics(request: ExportMetricsServiceRequest) -> Iterator[Item]:
    for resource_metrics in request.resource_metrics:
        agent = agent_of(resource_metrics.resource)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind in ("gauge", "sum"):
                    for p in getattr(metric, kind).data_points:
                        value = p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
                        yield _point(agent, metric.name, value, p.time_unix_nano, p.attributes)
                elif kind in ("histogram", "exponential_histogram", "summary"):
                    for h in getattr(metric, kind).data_points:
                        for part, value in (("count", float(h.count)), ("sum", float(h.sum))):
                            yield _point(
                                agent, f"{metric.name}.{part}", value, h.time_unix_nano, h.attributes
                            )


def _point(agent: str, name: str, value: float, unix_nano: int, attrs: Any) -> Item:
    flat = attributes(attrs)
    key = _digest(name, unix_nano, sorted(flat.items(), key=lambda kv: kv[0]))
    tags = stored(flat)
    return Item(agent, "metrics", MetricIn(id=f"otel-{key}", name=name[:256], value=value, ts=at(unix_nano),
                                           tags=tags or None))  # fmt: skip


MAPPERS: Mapping[str, Any] = {"traces": spans, "logs": logs, "metrics": metrics}
