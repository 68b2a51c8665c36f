"""Nothing one agent sends can stop the fleet: the three findings of issue 24, the ingest
loop's isolation of what no adapter classified, and the driver error tables row by row."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import aiohttp
import asyncpg
import bson
import pytest
from miniopy_async.error import S3Error
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConfigurationError,
    ExecutionTimeout,
    InvalidOperation,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
    WriteConcernError,
)

from agentstore.contract import DEADLETTER, StreamSpec
from agentstore.errors import StoreMisconfigured, StoreRejected, StoreUnavailable
from agentstore_server.bus.ingest import POISON_ATTEMPTS, Handler, Ingest, IngestWorker, MaxDeliveries
from agentstore_server.bus.provision import ensure_consumer, ensure_stream
from agentstore_server.lifecycle.metrics import ServiceMetrics
from agentstore_server.lifecycle.runner import ServiceHost
from agentstore_server.stores import mongo, objects, postgres
from agentstore_server.stores.mongo import MongoStore
from tests.helpers import after, as_json, dead_letters, eventually, new_agent, publish_all, request

TOO_BIG = 2**64  # valid JSON, past BSON's (and PostgreSQL's) int64


async def ok(nc: Client, subject: str, body: dict[str, Any]) -> Any:
    code, reply = await request(nc, subject, body)
    assert code == 200, reply
    return reply


async def _dead(nc: Client, n: int) -> list[Any]:
    dead = await dead_letters(nc)
    return dead if len(dead) >= n else []


async def test_an_int_past_int64_in_fields_data_or_payload_is_deadlettered_and_every_agent_goes_on(
    logs_service: ServiceHost, nc: Client
) -> None:
    """Finding 1: one such log held every agent's logs, memories and events for ever."""
    agent, other = new_agent(), new_agent()
    poison = {
        "logs": ({"id": "bad", "level": "info", "message": "m", "fields": {"v": TOO_BIG}}, "$.fields.v"),
        "memories": ({"id": "bad", "kind": "k", "content": "c", "data": {"n": [1, -TOO_BIG]}}, "$.data.n[1]"),
        "events": ({"id": "bad", "type": "t", "payload": {"deep": {"x": TOO_BIG}}}, "$.payload.deep.x"),
    }
    good = {
        "logs": lambda i: {"id": f"good{i}", "level": "info", "message": "m", "fields": {"v": 2**63 - 1}},
        "memories": lambda i: {"id": f"good{i}", "kind": "k", "content": "c", "data": {"n": -(2**63)}},
        "events": lambda i: {"id": f"good{i}", "type": "t", "payload": {"x": 1}},
    }
    items = []
    for kind, (body, _) in poison.items():
        items += [(f"agents.{agent}.{kind}", as_json(good[kind](1)), None),
                  (f"agents.{agent}.{kind}", as_json(body), None),
                  (f"agents.{agent}.{kind}", as_json(good[kind](2)), None)]  # fmt: skip
    await publish_all(nc, items)
    dead = await eventually(lambda: _dead(nc, len(poison)), what="the poisons dead-lettered")
    reasons = {m.headers["Dead-Subject"].rsplit(".", 1)[1]: m.headers["Dead-Reason"] for m in dead}
    for kind, (_, path) in poison.items():
        assert f"{path}: integer out of int64 range" in reasons[kind], reasons[kind]
    # Published after the poisons, by another agent: stored as if nothing happened.
    (late,) = await publish_all(nc, [(f"agents.{other}.logs", as_json(good["logs"](3)), None)])
    page = await ok(nc, "query.logs", {"agent_ids": [other], "after": after(late)})
    assert [it["id"] for it in page["items"]] == ["good3"]
    for kind in poison:
        page = await ok(nc, f"query.{kind}", {"agent_ids": [agent], "after": after(late)})
        assert sorted(it["id"] for it in page["items"]) == ["good1", "good2"], kind
    assert len(await dead_letters(nc)) == len(poison)


async def test_a_nul_in_a_progress_detail_is_deadlettered_and_its_batch_neighbours_are_stored(
    tasks_service: ServiceHost, nc: Client
) -> None:
    """Finding 2: the valid progress next to it in the same batch were not stored."""
    agent = new_agent()
    bodies = [{"id": "p1", "task_id": "t", "step": 1, "status": "ok", "detail": {"note": "fine"}},
              {"id": "p2", "task_id": "t", "step": 2, "status": "ok", "detail": {"note": "a\u0000b"}},
              {"id": "p3", "task_id": "t", "step": 3, "status": "ok", "detail": {"n\u0000": 1}},
              {"id": "p4", "task_id": "t", "step": 4, "status": "ok", "detail": {"x": TOO_BIG}},
              {"id": "p5", "task_id": "t", "step": 5, "status": "ok", "detail": {"note": "fine"}}]  # fmt: skip
    acks = await publish_all(nc, [(f"agents.{agent}.progress", as_json(b), None) for b in bodies])
    dead = await eventually(lambda: _dead(nc, 3), what="three dead letters")
    reasons = sorted(m.headers["Dead-Reason"] for m in dead)
    assert any("$.detail.note: NUL" in r for r in reasons), reasons
    assert any("$.detail: key" in r for r in reasons), reasons
    assert any("$.detail.x: integer out of int64 range" in r for r in reasons), reasons
    page = await ok(nc, "query.progress", {"agent_id": agent, "task_id": "t", "after": after(acks[-1])})
    assert [p["id"] for p in page["items"]] == ["p1", "p5"]


# Finding 3: OperationFailure was listed as transient, so a login failure read as
# "unreachable" and a refused document was retried for ever. One row a case, most specific
# first: the server's code decides before the exception's class.
MONGO_ERRORS: list[tuple[BaseException, type[Exception] | None]] = [
    (OperationFailure("Unauthorized", code=13), StoreMisconfigured),
    (OperationFailure("AuthenticationFailed", code=18), StoreMisconfigured),
    (OperationFailure("BadValue", code=2), StoreRejected),
    (OperationFailure("TypeMismatch", code=14), StoreRejected),
    (OperationFailure("DollarPrefixedFieldName", code=52), StoreRejected),
    (OperationFailure("BSONObjectTooLarge", code=10334), StoreRejected),
    (OperationFailure("E11000 duplicate key", code=11000), StoreRejected),
    (OperationFailure("a code nobody listed", code=987654), StoreRejected),
    (OperationFailure("ShutdownInProgress", code=91), StoreUnavailable),
    # FerretDB while its PostgreSQL is down (T4 at full size found it dead-lettering logs):
    (OperationFailure("[msg_insert.go:168 handler.(*Handler).MsgInsert] failed to connect to `user=postgres "
                      "database=ferretdb`: dial error: dial tcp 127.0.0.1:5432: connect: connection refused",
                      code=1), StoreUnavailable),
    (OperationFailure("an internal error about the document", code=1), StoreRejected),
    (OperationFailure("PrimarySteppedDown", code=189), StoreUnavailable),
    (OperationFailure("retry me", code=987654, details={"errorLabels": ["RetryableWriteError"]}), StoreUnavailable),
    (ExecutionTimeout("MaxTimeMSExpired", code=50), StoreUnavailable),
    (WriteConcernError("waiting for replication timed out", code=64), StoreUnavailable),
    (AutoReconnect("connection reset"), StoreUnavailable),
    (NetworkTimeout("timed out"), StoreUnavailable),
    (ServerSelectionTimeoutError("no servers"), StoreUnavailable),
    (ConfigurationError("bad URI option"), StoreMisconfigured),
    (OverflowError("MongoDB can only handle up to 8-byte ints"), StoreRejected),
    (bson.errors.InvalidDocument("key '$x' must not start with '$'"), StoreRejected),
    (bson.errors.InvalidStringData("strings must be valid UTF-8"), StoreRejected),
    (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), StoreRejected),
    (InvalidOperation("cannot use a closed client"), None),  # our bug: left to the ingest loop
]  # fmt: skip


@pytest.mark.parametrize(
    ("error", "expected"),
    MONGO_ERRORS,
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else "",
)
def test_mongo_error_table_row(error: BaseException, expected: type[Exception] | None) -> None:
    converted = mongo.convert(error, "mongodb://127.0.0.1:1")
    if expected is None:
        assert converted is None
    else:
        assert type(converted) is expected, converted


def test_a_bulk_write_failing_because_ferretdbs_backend_is_down_is_unavailable_not_refused() -> None:
    """Per-document errors of code 1 that name a lost backend connection: the whole write
    waits (nak, backoff), nothing is dead-lettered; other per-document errors stay refusals."""
    down = BulkWriteError({"writeErrors": [{"index": 0, "code": 1, "errmsg": "failed to connect to `user=postgres`: "
                                            "dial error: connect: connection refused"}]})  # fmt: skip
    with pytest.raises(StoreUnavailable, match="backend is unavailable"):
        MongoStore._refused(down)
    bad = BulkWriteError({"writeErrors": [{"index": 3, "code": 2, "errmsg": "bad value"}]})
    assert MongoStore._refused(bad) == {3: "bad value"}


async def test_mongo_refuses_what_bson_cannot_encode_as_a_data_error(mongo: MongoStore) -> None:
    """On the real server: the driver's OverflowError reaches callers as StoreRejected."""
    with pytest.raises(StoreRejected, match="OverflowError"):
        await mongo.insert_new("poison", [{"_id": "a", "v": TOO_BIG}])
    with pytest.raises(StoreRejected, match="OverflowError"):
        await mongo.upsert_many("poison", [({"_id": "a"}, {"$set": {"v": TOO_BIG}})])
    assert await mongo.insert_new("poison", [{"_id": "b", "v": 2**63 - 1}]) == {}


async def test_what_no_adapter_classified_is_isolated_by_bisection_and_deadlettered_alone(
    nc: Client,
) -> None:
    """A write raising an unexpected exception for one message: the batch is split until it
    is alone; it is retried POISON_ATTEMPTS times, then dead-lettered with the exception as
    its reason; every neighbour is stored and the worker never pauses for it."""
    js = nc.jetstream()
    spec = StreamSpec(name="ISOLATION", subjects=("agents.*.thing",), max_age_seconds=3600)
    await ensure_stream(js, spec)
    await ensure_stream(js, DEADLETTER)
    await ensure_consumer(js, spec.name, "isolation", max_ack_pending=1000, ack_wait=30)
    stored: list[str] = []
    batches: list[int] = []

    async def write(items: Sequence[str]) -> dict[int, str]:
        batches.append(len(items))
        if "poison" in items:
            raise KeyError("a bug only this message finds")
        stored.extend(items)
        return {}

    def decode(envelope: Any) -> str:
        return bytes(envelope.data).decode()

    worker = IngestWorker(
        "isolation", Ingest(spec, "isolation", {"thing": Handler(decode, write)}), js,
        ServiceMetrics(), batch=64, stopping=asyncio.Event(),
    )  # fmt: skip
    task = asyncio.create_task(worker.run())
    try:
        names = [f"ok{i:02d}" for i in range(40)]
        names.insert(17, "poison")
        await publish_all(nc, [("agents.a1.thing", n.encode(), None) for n in names])
        (dead,) = await eventually(lambda: _dead(nc, 1), what="the poison dead-lettered")
        await eventually(lambda: _true(len(stored) == 40), what="every neighbour stored")
    finally:
        worker.stopping.set()
        await task
    assert sorted(stored) == sorted(n for n in names if n != "poison")
    reason = dead.headers["Dead-Reason"]
    assert f"failed {POISON_ATTEMPTS} times alone" in reason and "KeyError" in reason, reason
    assert dead.data == b"poison"


async def _true(value: bool) -> bool:
    return value


# asyncpg by SQLSTATE class (also the FerretDB SQL reader's, which shares the table).
POSTGRES_ERRORS: list[tuple[BaseException, type[Exception]]] = [
    (asyncpg.exceptions.UniqueViolationError("duplicate key"), StoreRejected),  # 23505
    (asyncpg.exceptions.NotNullViolationError("null value"), StoreRejected),  # 23502
    (asyncpg.exceptions.UntranslatableCharacterError("\\u0000 cannot be converted"), StoreRejected),  # 22P05
    (asyncpg.exceptions.NumericValueOutOfRangeError("out of range"), StoreRejected),  # 22003
    (asyncpg.exceptions.DataError("invalid input for query argument $1"), StoreRejected),  # 22000
    (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), StoreRejected),
    (OverflowError("int too big to convert"), StoreRejected),
    (asyncpg.exceptions.UndefinedTableError("no such table"), StoreMisconfigured),  # 42P01
    (asyncpg.exceptions.InsufficientPrivilegeError("permission denied"), StoreMisconfigured),  # 42501
    (asyncpg.exceptions.InvalidPasswordError("password authentication failed"), StoreMisconfigured),  # 28P01
    (asyncpg.exceptions.InvalidCatalogNameError("no such database"), StoreMisconfigured),  # 3D000
    (asyncpg.exceptions.InvalidSchemaNameError("no such schema"), StoreMisconfigured),  # 3F000
    (asyncpg.exceptions.SerializationError("could not serialize"), StoreUnavailable),  # 40001
    (asyncpg.exceptions.DeadlockDetectedError("deadlock"), StoreUnavailable),  # 40P01
    (asyncpg.exceptions.TooManyConnectionsError("too many clients"), StoreUnavailable),  # 53300
    (asyncpg.exceptions.AdminShutdownError("terminating connection"), StoreUnavailable),  # 57P01
    (asyncpg.exceptions.CannotConnectNowError("starting up"), StoreUnavailable),  # 57P03
    (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), StoreUnavailable),  # 08003
    (asyncpg.exceptions.InterfaceError("pool is closing"), StoreUnavailable),
    (ConnectionRefusedError("connection refused"), StoreUnavailable),
    (TimeoutError(), StoreUnavailable),
]  # fmt: skip


@pytest.mark.parametrize(
    ("error", "expected"),
    POSTGRES_ERRORS,
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else "",
)
def test_postgres_error_table_row(error: BaseException, expected: type[Exception]) -> None:
    assert type(postgres.convert(error, "postgresql://u@127.0.0.1:1/db")) is expected


def test_every_postgres_error_leaves_the_adapter_as_ours() -> None:
    """What asyncpg raises reaches a service only converted: an InternalClientError (its
    protocol state broken by a connection lost mid-statement) escaped raw, and the tasks
    service's lease sweep died of it while PostgreSQL was down (T4)."""
    for error, expected in [*POSTGRES_ERRORS, (asyncpg.InternalClientError("cannot switch to state 15"),
                                               StoreUnavailable)]:  # fmt: skip
        with pytest.raises(expected), postgres.driver_errors("postgresql://u@127.0.0.1:1/db"):
            raise error


def _s3(code: str, status: int) -> S3Error:
    return S3Error(code, "message", "/bucket/key", "req", "host", SimpleNamespace(status=status))  # type: ignore[arg-type]


# S3 by error code (any S3 server answers with AWS's codes), an unlisted one by HTTP status.
S3_ERRORS: list[tuple[BaseException, type[Exception]]] = [
    (_s3("NoSuchKey", 404), StoreRejected),
    (_s3("InvalidObjectName", 400), StoreRejected),
    (_s3("EntityTooLarge", 400), StoreRejected),
    (_s3("KeyTooLongError", 400), StoreRejected),
    (_s3("InvalidArgument", 400), StoreRejected),
    (_s3("BadDigest", 400), StoreRejected),
    (_s3("SomethingNewButTheRequest", 400), StoreRejected),
    (_s3("NoSuchBucket", 404), StoreMisconfigured),
    (_s3("AccessDenied", 403), StoreMisconfigured),
    (_s3("InvalidAccessKeyId", 403), StoreMisconfigured),
    (_s3("SignatureDoesNotMatch", 403), StoreMisconfigured),
    (_s3("RequestTimeTooSkewed", 403), StoreMisconfigured),
    (_s3("SlowDown", 503), StoreUnavailable),
    (_s3("ServiceUnavailable", 503), StoreUnavailable),
    (_s3("InternalError", 500), StoreUnavailable),
    (_s3("RequestTimeout", 400), StoreUnavailable),
    (_s3("XMinioServerNotInitialized", 503), StoreUnavailable),
    (_s3("SomethingNewOnTheServer", 502), StoreUnavailable),
    (ValueError("object name cannot be empty"), StoreRejected),
    (aiohttp.ClientConnectionError("connection reset"), StoreUnavailable),
    (ConnectionRefusedError("connection refused"), StoreUnavailable),
    (TimeoutError(), StoreUnavailable),
]  # fmt: skip


@pytest.mark.parametrize(
    ("error", "expected"),
    S3_ERRORS,
    ids=lambda v: getattr(v, "code", None) or type(v).__name__ if isinstance(v, BaseException) else "",
)
def test_s3_error_table_row(error: BaseException, expected: type[Exception]) -> None:
    assert type(objects.convert(error, "127.0.0.1:9000")) is expected


async def test_a_message_past_max_deliver_is_deadlettered_or_put_back_during_an_outage(nc: Client) -> None:
    """The backstop: a message a process keeps dying on (fetched, never settled) reaches
    max_deliver; JetStream's advisory becomes a dead letter naming why. During a store outage
    the same advisory puts the message back on its subject instead: nothing is dead-lettered
    for want of a database."""
    js = nc.jetstream()
    spec = StreamSpec(name="BACKSTOP", subjects=("agents.*.thing",), max_age_seconds=3600)
    await ensure_stream(js, spec)
    await ensure_stream(js, DEADLETTER)
    await ensure_consumer(js, spec.name, "backstop", max_ack_pending=100, ack_wait=0.5, max_deliver=2)
    outage = False
    watcher = MaxDeliveries("backstop", nc, [Ingest(spec, "backstop", {})], lambda: outage, ServiceMetrics())
    await watcher.start()
    sub = await js.pull_subscribe_bind("backstop", stream=spec.name)

    async def die_on_it() -> None:
        """A worker that fetches and is gone before it settles anything."""
        with contextlib.suppress(NatsTimeoutError):
            await sub.fetch(1, timeout=0.3)

    async def dead_after_dying() -> list[Any]:
        await die_on_it()
        return await _dead(nc, 1)

    try:
        (crash,) = await publish_all(nc, [("agents.a1.thing", b"crash", {"Nats-Msg-Id": "m1"})])
        (dead,) = await eventually(dead_after_dying, what="the advisory's dead letter")
        assert dead.data == b"crash" and int(dead.headers["Dead-Seq"]) == crash.seq
        assert "max_deliver 2" in str(dead.headers["Dead-Reason"]), dead.headers
        assert dead.headers["Original-Nats-Msg-Id"] == "m1"

        outage = True
        (held,) = await publish_all(nc, [("agents.a1.thing", b"outage", {"Nats-Msg-Id": "m2"})])

        async def put_back() -> Any:
            await die_on_it()
            last = (await js.stream_info(spec.name)).state.last_seq
            if last > held.seq:
                return await js.get_msg(spec.name, last)
            return None

        again = await eventually(put_back, what="the message put back on its subject")
        assert again.data == b"outage" and again.subject == "agents.a1.thing"
        assert len(await dead_letters(nc)) == 1  # only the crash
    finally:
        await watcher.stop()
        await sub.unsubscribe()
