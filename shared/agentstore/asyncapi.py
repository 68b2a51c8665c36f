"""The AsyncAPI 3.0 document of the wire contract, generated from the msgspec Structs.

`python -m agentstore.asyncapi > docs/asyncapi.json` regenerates it; a test
fails when the checked-in document drifts from the code.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from agentstore import __version__
from agentstore.schemas import artifacts, logs, metrics, tasks

# Ingest: agents.{agent}.{kind} -> body (None: raw bytes)
INGEST: dict[str, type[msgspec.Struct] | None] = {
    "logs": logs.LogIn,
    "memories": logs.MemoryIn,
    "conversations": logs.ConversationIn,
    "messages": logs.MessageIn,
    "events": logs.EventIn,
    "outputs": logs.OutputIn,
    "tasks": tasks.TaskIn,
    "progress": tasks.ProgressIn,
    "metrics": metrics.MetricIn,
    "artifacts": None,
    "uploads": artifacts.UploadIn,
}

# Request-reply for evaluators and frontends: subject -> request
REQUESTS: dict[str, type[msgspec.Struct]] = {
    "query.logs": logs.LogsQuery,
    "query.memories": logs.MemoriesQuery,
    "query.conversations": logs.ConversationsQuery,
    "query.conversation": logs.ConversationQuery,
    "query.events": logs.EventsQuery,
    "query.outputs": logs.OutputsQuery,
    "query.tasks": tasks.TasksQuery,
    "query.task": tasks.TaskQuery,
    "query.files": artifacts.FilesQuery,
    "query.file_url": artifacts.FileUrlQuery,
    "query.metrics": metrics.MetricsQuery,
    "query.agent_metrics": metrics.ProfileQuery,
    "query.summary": metrics.SummaryQuery,
    "query.runs": tasks.RunsQuery,
    "query.run": tasks.RunQuery,
    "eval.record": tasks.EvalRecord,
    "eval.custody_test": metrics.CustodyTest,
    "eval.learning": metrics.Learning,
    "eval.agent_metrics.update": metrics.UpdateProfile,
    "eval.agent_metrics.bulk": metrics.BulkUpdate,
    "eval.agent_metrics.reset": metrics.ResetProfile,
    "runs.submit": tasks.SubmitRun,
    "runs.cancel": tasks.CancelRun,
}

# Request-reply for agents: agents.{agent}.rpc.{name} -> request
AGENT_REQUESTS: dict[str, type[msgspec.Struct]] = {
    "presign": artifacts.PresignRequest,
    "restore": tasks.RestoreRequest,
    "claim": tasks.ClaimRun,
    "renew": tasks.RenewLease,
    "phase": tasks.MovePhase,
    "release": tasks.ReleaseRun,
    **{
        f"query.{name}": REQUESTS[f"query.{name}"]
        for name in (
            "logs",
            "memories",
            "conversations",
            "conversation",
            "events",
            "outputs",
            "tasks",
            "task",
            "files",
            "file_url",
            "metrics",
            "agent_metrics",
        )
    },
}

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


def _key(subject: str) -> str:
    return subject.replace(".", "_").replace("{", "").replace("}", "")


def document() -> dict[str, Any]:
    structs = [s for s in INGEST.values() if s] + list(REQUESTS.values()) + list(AGENT_REQUESTS.values())
    _, components = msgspec.json.schema_components(
        sorted(set(structs), key=lambda s: s.__name__), ref_template="#/components/schemas/{name}"
    )
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {
        "Error": {"name": "Error", "payload": ERROR, "headers": {"type": "object", "properties": {
            "Nats-Service-Error-Code": {"type": "string"}, "Nats-Service-Error": {"type": "string"}}}},
        "Reply": {"name": "Reply", "contentType": "application/json", "payload": {"type": "object"}},
        "Artifact": {"name": "Artifact", "contentType": "application/octet-stream",
                     "payload": {"type": "string", "format": "binary"},
                     "headers": {"type": "object", "required": ["Nats-Msg-Id", "Content-Type", "Artifact-Name"],
                                 "properties": {h: {"type": "string"} for h in
                                                ("Nats-Msg-Id", "Content-Type", "Artifact-Name", "Task-Id", "Artifact-Bucket")}}},
    }  # fmt: skip
    agent_param = {"agent": {"description": "agent id, ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"}}
    for kind, struct in INGEST.items():
        name = struct.__name__ if struct else "Artifact"
        if struct:
            messages[name] = {"name": name, "contentType": "application/json",
                              "payload": {"$ref": f"#/components/schemas/{name}"},
                              "headers": {"type": "object", "properties": {"Nats-Msg-Id": {
                                  "type": "string", "description": "{agent}:{id}"}}}}  # fmt: skip
        key = f"agents_agent_{kind}"
        channels[key] = {"address": f"agents.{{agent}}.{kind}", "parameters": agent_param,
                         "messages": {name: {"$ref": f"#/components/messages/{name}"}}}  # fmt: skip
        operations[f"publish_{kind}"] = {"action": "send", "channel": {"$ref": f"#/channels/{key}"},
                                         "summary": f"An agent publishes {kind} (JetStream; PubAck = durable)"}  # fmt: skip
    for subject, struct in [
        *REQUESTS.items(),
        *((f"agents.{{agent}}.rpc.{n}", s) for n, s in AGENT_REQUESTS.items()),
    ]:
        name = struct.__name__
        messages.setdefault(name, {"name": name, "contentType": "application/json",
                                   "payload": {"$ref": f"#/components/schemas/{name}"}})  # fmt: skip
        key = _key(subject)
        channel: dict[str, Any] = {"address": subject, "messages": {
            name: {"$ref": f"#/components/messages/{name}"},
            "Reply": {"$ref": "#/components/messages/Reply"},
            "Error": {"$ref": "#/components/messages/Error"}}}  # fmt: skip
        if "{agent}" in subject:
            channel["parameters"] = agent_param
        channels[key] = channel
        operations[f"request_{key}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{name}"}],
            "reply": {"messages": [{"$ref": f"#/channels/{key}/messages/Reply"},
                                   {"$ref": f"#/channels/{key}/messages/Error"}]},
        }  # fmt: skip
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "agentstore", "version": __version__,
                 "description": "The wire contract of agentstore: see docs/CONTRACT.md."},
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:4222", "protocol": "nats"}},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": components, "messages": messages},
    }  # fmt: skip


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
