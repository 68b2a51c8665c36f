"""The AsyncAPI 3.0 document of the wire contract, derived from `agentstore.contract`.

It describes agentstore as the application: it receives ingest messages and
requests, replies with the declared reply shapes (or the contract's error),
and sends dead letters. `python -m agentstore.asyncapi > docs/asyncapi.json`
regenerates it; tests check the file is current and valid against the
official AsyncAPI 3.0 JSON Schema.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import msgspec

from agentstore import __version__, contract
from agentstore.schemas.common import StoredNotice

NATS_BINDING_VERSION = "0.1.0"
AGENT_PARAM = {"agent": {"description": "agent id, ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"}}
SERVICE_PARAM = {"service": {"description": "the service that refused the message", "enum": [s.name for s in contract.SERVICES]}}  # fmt: skip

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "integer", "enum": [400, 403, 404, 409, 500, 503]},
                "message": {"type": "string"},
            },
        }
    },
}
ERROR_HEADERS = {"type": "object", "properties": {
    "Nats-Service-Error-Code": {"type": "string"}, "Nats-Service-Error": {"type": "string", "maxLength": 512}}}  # fmt: skip
ARTIFACT_HEADERS = ("Nats-Msg-Id", "Content-Type", "Artifact-Name", "Task-Id", "Artifact-Bucket")
DEAD_HEADERS = ("Dead-Reason", "Dead-Subject", "Dead-Stream", "Dead-Seq", "Nats-Msg-Id",
                *(f"Original-{h}" for h in ("Nats-Msg-Id", "Content-Type", "Artifact-Name", "Task-Id")))  # fmt: skip


def _key(address: str) -> str:
    return address.replace(".", "_").replace("{", "").replace("}", "")


def _name(t: Any) -> str:
    """A schema's component name as msgspec writes it (generics: `Page_LogItem_`)."""
    args = getattr(t, "__args__", None)
    origin = getattr(t, "__origin__", t)
    return f"{origin.__name__}_{'_'.join(a.__name__ for a in args)}_" if args else str(t.__name__)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/messages/{name}"}


def document() -> dict[str, Any]:
    """The AsyncAPI document, its prose normalised (`plain_text`)."""
    types: list[Any] = [i.body for i in contract.INGEST if i.body is not None] + [StoredNotice]
    for e in contract.ENDPOINTS:
        types += [e.request, *e.reply_types]
    _, schemas = msgspec.json.schema_components(
        sorted(set(types), key=_name), ref_template="#/components/schemas/{name}"
    )
    messages: dict[str, Any] = {
        "Error": {"name": "Error", "contentType": "application/json", "payload": ERROR, "headers": ERROR_HEADERS},
        "Artifact": {"name": "Artifact", "contentType": "application/octet-stream",
                     "payload": {"type": "string", "format": "binary"},
                     "headers": {"type": "object", "required": ["Nats-Msg-Id", "Content-Type", "Artifact-Name"],
                                 "properties": {h: {"type": "string"} for h in ARTIFACT_HEADERS}}},
        "DeadLetter": {"name": "DeadLetter", "summary": "the original body, with why it can never be stored",
                       "payload": {}, "headers": {"type": "object", "required": list(DEAD_HEADERS[:5]),
                                                  "properties": {h: {"type": "string"} for h in DEAD_HEADERS}}},
    }  # fmt: skip
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for i in contract.INGEST:
        name = i.body.__name__ if i.body else "Artifact"
        if i.body:
            msg_id = "{agent}:{id}@{update}" if i.upsert else "{agent}:{id}"
            messages[name] = {"name": name, "contentType": "application/json",
                              "payload": {"$ref": f"#/components/schemas/{name}"},
                              "headers": {"type": "object", "properties": {"Nats-Msg-Id": {
                                  "type": "string", "description": msg_id}}}}  # fmt: skip
        key = _key(i.address)
        channels[key] = {"address": i.address, "parameters": AGENT_PARAM, "description": i.summary,
                         "messages": {name: _ref(name)}, "x-jetstream-stream": i.stream}  # fmt: skip
        operations[f"ingest_{i.kind}"] = {
            "action": "receive", "channel": {"$ref": f"#/channels/{key}"},
            "summary": f"{i.service} stores {i.summary} (JetStream stream {i.stream}; PubAck = durable)",
            "bindings": {"nats": {"queue": f"durable consumer {i.service}", "bindingVersion": NATS_BINDING_VERSION}},
        }  # fmt: skip
    for e in contract.ENDPOINTS:
        request = e.request.__name__
        messages.setdefault(request, {"name": request, "contentType": "application/json",
                                      "payload": {"$ref": f"#/components/schemas/{request}"}})  # fmt: skip
        replies = [_name(t) for t in e.reply_types]
        for reply in replies:
            messages.setdefault(reply, {"name": reply, "contentType": "application/json",
                                        "payload": {"$ref": f"#/components/schemas/{reply}"}})  # fmt: skip
        for address in e.addresses:
            key = _key(address)
            channel: dict[str, Any] = {
                "address": address, "description": e.summary,
                "messages": {request: _ref(request), **{r: _ref(r) for r in replies}, "Error": _ref("Error")},
            }  # fmt: skip
            if "{agent}" in address:
                channel["parameters"] = AGENT_PARAM
            if e.after:
                channel["x-after-stream"] = e.after
            channels[key] = channel
            operations[f"serve_{key}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{key}"},
                "summary": f"{e.service}: {e.summary}",
                "messages": [{"$ref": f"#/channels/{key}/messages/{request}"}],
                "reply": {"messages": [{"$ref": f"#/channels/{key}/messages/{r}"} for r in [*replies, "Error"]]},
                "bindings": {"nats": {"queue": f"agentstore.{contract.micro_name(address)}",
                                      "bindingVersion": NATS_BINDING_VERSION}},
                "x-roles": sorted(e.roles),
            }  # fmt: skip
    messages["StoredNotice"] = {"name": "StoredNotice", "contentType": "application/json",
                                "payload": {"$ref": "#/components/schemas/StoredNotice"}}  # fmt: skip
    for i in contract.INGEST:
        if not i.notice:
            continue
        key = _key(i.notice_address)
        channels[key] = {"address": i.notice_address, "parameters": AGENT_PARAM,
                         "description": f"{i.service} stored new messages of {i.address} (core NATS, at most once)",
                         "messages": {"StoredNotice": _ref("StoredNotice")}}  # fmt: skip
        operations[f"notify_{i.kind}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{key}"},
            "summary": f"{i.service} says a batch of {i.kind} is stored and acknowledged (v1.14)",
            "x-roles": ["evaluator"],
        }  # fmt: skip
    channels["deadletter_service"] = {"address": "deadletter.{service}", "parameters": SERVICE_PARAM,
                                      "description": "what a service can never store (stream DEADLETTER, 30 days)",
                                      "messages": {"DeadLetter": _ref("DeadLetter")},
                                      "x-jetstream-stream": contract.DEADLETTER_STREAM}  # fmt: skip
    operations["send_deadletter"] = {"action": "send", "channel": {"$ref": "#/channels/deadletter_service"},
                                     "summary": "a service dead-letters a message that can never be stored"}  # fmt: skip
    doc: dict[str, Any] = _normalised({
        "asyncapi": "3.0.0",
        "info": {"title": "agentstore", "version": __version__,
                 "description": "The wire contract of agentstore: see docs/CONTRACT.md."},
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:4222", "protocol": "nats"}},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    })  # fmt: skip
    return doc


# The prose fields of AsyncAPI and JSON Schema; their text comes from docstrings and summaries.
TEXT_FIELDS = ("description", "summary", "title")


def plain_text(text: str) -> str:
    """A docstring as the document shows it: common indentation and surrounding blank lines
    removed, no trailing whitespace on any line. Done here rather than left to msgspec, whose
    handling of docstrings changed between releases (0.22 kept the indentation, 0.23 not)."""
    return "\n".join(line.rstrip() for line in inspect.cleandoc(text).splitlines())


def _normalised(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: plain_text(v) if k in TEXT_FIELDS and isinstance(v, str) else _discriminator(k, v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_normalised(v) for v in node]
    return node


def _discriminator(key: str, value: Any) -> Any:
    """A tagged union's discriminator as AsyncAPI 3 has it, the property's name (msgspec writes
    OpenAPI's object of `propertyName` and `mapping`; each variant's schema fixes its tag)."""
    if key == "discriminator" and isinstance(value, dict) and "propertyName" in value:
        return value["propertyName"]
    return _normalised(value)


def render() -> str:
    """The document as checked in: keys sorted, ASCII-only JSON, so the bytes depend on the
    contract alone, not on the versions of msgspec or the JSON encoder."""
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
