"""The SQL read path over FerretDB 1.24's PostgreSQL tables answers exactly what FerretDB
answers over the wire: the same documents, in the same order, for every filter shape the
logs service sends; and it reads through the indexes instead of scanning."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from agentstore.errors import ConfigError
from agentstore_server.devstack import binaries
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import ServiceHost
from agentstore_server.stores import ferretsql
from agentstore_server.stores.ferretsql import FerretSql
from agentstore_server.stores.mongo import MongoStore
from agentstore_server.stores.readers import FerretSqlReader, reading
from tests.helpers import scrape

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def documents() -> list[dict[str, Any]]:
    docs = []
    for i in range(300):
        agent = f"agent{i % 7}"
        doc: dict[str, Any] = {
            "_id": f"{agent}:{i:04d}",
            "agent_id": agent,
            "id": f"{i:04d}",
            # Ties on ts (every 3 documents share one) exercise the _id tie-break.
            "ts": T0 + timedelta(seconds=i // 3),
            "level_no": (10, 20, 30, 40, 50)[i % 5],
            "message": ["step 100% done", "Retry_after x", "plain", "a\\b (c) [d]", "ÉCOLE ok"][i % 5],
            "fields": {"n": i, "f": i / 4, "tags": ["x", {"deep": None}], "ok": i % 2 == 0},
        }
        if i % 4 == 0:
            doc["task_id"] = f"task-{i % 3}"
        if i % 6 == 0:
            doc["tags"] = ["red", "blue"] if i % 12 == 0 else ["red"]
        docs.append(doc)
    return docs


@pytest.fixture
async def stores(mongo_server: Server) -> AsyncIterator[tuple[MongoStore, FerretSqlReader]]:
    """The same database through the wire, and through SQL (the reader `reading` chooses)."""
    assert mongo_server.sql_url is not None, "the suite runs FerretDB on PostgreSQL"
    name = f"sql{uuid.uuid4().hex[:10]}"
    wire = MongoStore(mongo_server.url, name)
    sql = FerretSqlReader(FerretSql(mongo_server.sql_url, name), wire)
    await wire.ensure_indexes("logs", {"agent_ts": ([("agent_id", 1), ("ts", -1), ("_id", -1)], False),
                                       "ts": ([("ts", -1), ("_id", -1)], False)})  # fmt: skip
    assert await wire.insert_new("logs", documents()) == {}
    yield wire, sql
    await wire.drop_database()
    await sql.sql.close()
    await wire.close()


@pytest.fixture
async def planner(
    stores: tuple[MongoStore, FerretSqlReader], mongo_server: Server
) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """The logs table's name and a PostgreSQL session beside it, to ask for plans."""
    _, sql = stores
    assert mongo_server.sql_url is not None
    table = await sql.sql._table(await sql.sql._connect(), "logs")
    assert table is not None
    conn = await asyncpg.connect(mongo_server.sql_url)
    yield table, conn
    await conn.close()


DESC = [("ts", -1), ("_id", -1)]
ASC = [("ts", 1), ("_id", 1)]
CURSOR = {"$or": [{"ts": {"$lt": T0 + timedelta(seconds=50)}},
                  {"ts": T0 + timedelta(seconds=50), "_id": {"$lt": "agent3:0150"}}]}  # fmt: skip
ASC_CURSOR = {"$or": [{"ts": {"$gt": T0 + timedelta(seconds=5)}},
                      {"ts": T0 + timedelta(seconds=5), "_id": {"$gt": "agent1:0015"}}]}  # fmt: skip
WINDOW = {"$gte": T0 + timedelta(seconds=10), "$lt": T0 + timedelta(seconds=60)}
CASES: list[tuple[str, dict[str, Any], list[tuple[str, int]], int]] = [
    ("everything newest first", {}, DESC, 101),
    ("one agent", {"agent_id": "agent3"}, DESC, 20),
    ("agents ($in, per-agent ranges merged)", {"agent_id": {"$in": ["agent1", "agent5"]}}, DESC, 30),
    ("$in without a limit", {"agent_id": {"$in": ["agent1", "agent5"]}}, ASC, 0),
    ("many agents ($in past 32 values: LATERAL)", {"agent_id": {"$in": [f"agent{i}" for i in range(40)]}},
     DESC, 25),
    ("levels at or above ($in, each level's range)", {"level_no": {"$in": [40, 50]}}, DESC, 30),
    ("minimum level", {"level_no": {"$gte": 40}}, DESC, 50),
    ("time range", {"ts": {"$gte": T0 + timedelta(seconds=10), "$lt": T0 + timedelta(seconds=20)}}, ASC, 0),
    ("agent and an hour (the range paired with the agent)", {"agent_id": "agent2",
     "ts": {"$gte": T0 + timedelta(seconds=10), "$lt": T0 + timedelta(seconds=60)}}, DESC, 5),
    ("agents and an hour", {"agent_id": {"$in": ["agent2", "agent3"]},
     "ts": {"$gte": T0 + timedelta(seconds=10), "$lt": T0 + timedelta(seconds=60)}}, DESC, 5),
    ("agent, level and time", {"agent_id": "agent2", "level_no": {"$gte": 30},
                               "ts": {"$lt": T0 + timedelta(seconds=80)}}, DESC, 10),  # fmt: skip
    ("keyset cursor, descending", CURSOR, DESC, 15),
    ("a window, newest first", {"ts": WINDOW}, DESC, 20),
    ("a window and its cursor (the cursor implies the window's end)", {"ts": WINDOW, **CURSOR}, DESC, 15),
    ("a cursor past the window's end (the end implies the cursor)",
     {"ts": {"$gte": T0 + timedelta(seconds=10), "$lt": T0 + timedelta(seconds=40)}, **CURSOR}, DESC, 15),
    ("$lte at the cursor's own value", {"ts": {"$lte": T0 + timedelta(seconds=50)}, **CURSOR}, DESC, 15),
    ("$lt at the cursor's own value", {"ts": {"$lt": T0 + timedelta(seconds=50)}, **CURSOR}, DESC, 15),
    ("a window and an ascending cursor", {"ts": {"$gte": T0 + timedelta(seconds=3), "$lt": T0 + timedelta(seconds=30)},
                                          **ASC_CURSOR}, ASC, 15),
    ("an ascending cursor before the window's start", {"ts": {"$gt": T0 + timedelta(seconds=8)}, **ASC_CURSOR}, ASC, 15),
    ("a window of text", {"agent_id": {"$gte": "agent2", "$lt": "agent4"}}, DESC, 30),
    ("a window of _id", {"_id": {"$gt": "agent2", "$lte": "agent4:0100"}}, DESC, 30),
    ("a range of booleans", {"fields.ok": {"$gte": True}}, DESC, 10),
    ("numbers and text in one field's window", {"fields.n": {"$gte": 5, "$lt": "z"}}, DESC, 10),
    ("keyset cursor, ascending", ASC_CURSOR, ASC, 15),
    ("agent and cursor", {"agent_id": "agent4", **CURSOR}, DESC, 10),
    ("literal text, case-insensitive, with LIKE's wildcards", {"message": {"$regex": r"100%\ done", "$options": "i"}}, DESC, 5),
    ("text with an underscore", {"message": {"$regex": "retry_after", "$options": "i"}}, DESC, 5),
    ("text with backslash and brackets", {"message": {"$regex": r"a\\b\ \(c\)\ \[d\]", "$options": "i"}}, DESC, 5),
    ("text, non-ASCII, case-insensitive", {"message": {"$regex": "école", "$options": "i"}}, DESC, 5),
    ("equality on an optional field", {"task_id": "task-1"}, DESC, 0),
    ("missing or null", {"task_id": None}, DESC, 5),
    ("$exists", {"tags": {"$exists": True}}, DESC, 0),
    ("$all", {"tags": {"$all": ["red", "blue"]}}, DESC, 0),
    ("a dotted path", {"fields.n": {"$lt": 10}}, ASC, 0),
    ("$or of equalities", {"$or": [{"agent_id": "agent0"}, {"level_no": 50}]}, DESC, 12),
    ("by _id", {"_id": "agent3:0003"}, (), 0),
    ("nothing matches", {"agent_id": "nobody"}, DESC, 10),
]  # fmt: skip


@pytest.mark.parametrize(("filter", "sort", "limit"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_sql_reads_answer_exactly_what_ferretdb_answers(
    stores: tuple[MongoStore, FerretSqlReader],
    filter: dict[str, Any],
    sort: list[tuple[str, int]],
    limit: int,
) -> None:
    wire, sql = stores
    over_wire = await wire.find("logs", filter, sort=sort, limit=limit)
    # The SQL path answers (nothing fell back to FerretDB) ...
    direct = await sql.sql.find("logs", filter, sort, limit)
    # ... with the same documents, field for field (dates, doubles, nested maps and lists).
    if not sort:
        over_wire.sort(key=lambda d: d["_id"])
        direct.sort(key=lambda d: d["_id"])
    assert direct == over_wire
    assert [list(d) for d in direct] == [list(d) for d in over_wire]  # and field order
    assert await sql.count("logs", filter) == await wire.count("logs", filter)


async def test_what_sql_cannot_say_is_asked_over_the_wire(stores: tuple[MongoStore, FerretSqlReader]) -> None:
    wire, sql = stores
    regex = {"message": {"$regex": "^step", "$options": "i"}}
    with pytest.raises(ferretsql.Unsupported):
        ferretsql.select("t", regex, DESC, 10)
    assert await sql.find("logs", regex, sort=DESC, limit=10) == await wire.find(
        "logs", regex, sort=DESC, limit=10
    )
    assert await sql.find("absent", {"agent_id": "x"}, sort=DESC, limit=10) == []
    assert await sql.find_one("logs", {"_id": "agent3:0003"}) == await wire.find_one(
        "logs", {"_id": "agent3:0003"}
    )


async def test_a_collection_dropped_and_made_again_is_found_under_its_new_table(
    stores: tuple[MongoStore, FerretSqlReader],
) -> None:
    wire, sql = stores
    assert len(await sql.find("logs", {"agent_id": "agent1"}, sort=DESC, limit=5)) == 5
    await wire.delete_many("logs", {})
    await wire._db.drop_collection("logs")
    await wire.insert_new("logs", documents()[:3])
    assert [d["_id"] for d in await sql.find("logs", {}, sort=ASC, limit=10)] == [
        "agent0:0000", "agent1:0001", "agent2:0002"]  # fmt: skip


async def test_a_page_reads_an_index_range_not_the_table(planner: tuple[str, asyncpg.Connection]) -> None:
    """PostgreSQL's plan for a newest-first page of one agent, and of the fleet, after a
    cursor: an index scan under a Limit, never a sequential scan of the collection."""
    table, conn = planner
    # 300 rows: the planner would rather sort them; forbid what a large collection makes
    # costly, so the plan shows whether an index-ordered range exists at all.
    await conn.execute("SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off")
    for filter in ({"agent_id": "agent3", **CURSOR}, CURSOR):
        statement, args = ferretsql.select(table, filter, DESC, 101)
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {statement}", *args))
        assert "Limit" in plan and "Index" in plan and "Sort" not in plan, plan


async def test_a_narrow_window_is_planned_for_more_rows_than_its_page(
    stores: tuple[MongoStore, FerretSqlReader], planner: tuple[str, asyncpg.Connection]
) -> None:
    """A window inside one bucket of the histogram (an hour of ten days at 1M logs) was
    estimated at one row, and PostgreSQL then planned a page as if the LIMIT never stopped
    the scan (some took a sort of thousands of rows). Written by `_Ranges`, the window's
    first page and its cursor's page are each estimated at least at the page's size."""
    _, sql = stores
    table, conn = planner
    # Ten buckets of 30 rows; the window holds 6 rows (2 s) inside one of them.
    await conn.execute(f"SET default_statistics_target = 10; ANALYZE {table}")
    window = {"ts": {"$gte": T0 + timedelta(seconds=41), "$lt": T0 + timedelta(seconds=43)}}
    first = await sql.sql.find("logs", window, DESC, 3)
    cursor = {"$or": [{"ts": {"$lt": first[-1]["ts"]}},
                      {"ts": first[-1]["ts"], "_id": {"$lt": first[-1]["_id"]}}]}  # fmt: skip
    for filter in (window, {**window, **cursor}):
        statement, args = ferretsql.select(table, filter, DESC, 3)
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", *args)
        top = json.loads(plan)[0]["Plan"]
        assert top["Node Type"] == "Limit", top
        assert top["Plans"][0]["Plan Rows"] >= 3, top["Plans"][0]
    assert len(await sql.sql.find("logs", {**window, **cursor}, DESC, 3)) == 3


@pytest.mark.parametrize(
    ("filter", "key"),
    [
        ({"level_no": 50, "ts": {"$gte": T0 + timedelta(seconds=10)}}, "agent_id"),
        ({"level_no": 40, "agent_id": {"$in": ["agent1", "agent2", "agent6"]}}, "agent_id"),
        ({}, "task_id"),  # a field some documents lack: counted under None
        ({"agent_id": "nobody"}, "agent_id"),
    ],
    ids=["a level since a time", "a level for some agents", "by an optional field", "nothing matches"],
)
async def test_grouped_counts_are_what_ferretdb_aggregates(
    stores: tuple[MongoStore, FerretSqlReader], filter: dict[str, Any], key: str
) -> None:
    """`count_by` (the console's errors per agent) in one SQL GROUP BY, equal to FerretDB's
    `$group` over the wire."""
    wire, sql = stores
    expected = await wire.count_by("logs", filter, key)
    assert await sql.sql.count_by("logs", filter, key) == expected
    assert sum(expected.values()) == await wire.count("logs", filter)


async def test_a_read_the_sql_path_cannot_answer_is_answered_over_the_wire_counted_and_logged_once(
    stores: tuple[MongoStore, FerretSqlReader], caplog: pytest.LogCaptureFixture
) -> None:
    wire, sql = stores
    shape = {"message": {"$regex": "m.ssage 1"}}  # a pattern, not an escaped literal
    for _ in range(3):
        assert await sql.find("logs", shape, sort=[("ts", -1), ("_id", -1)]) == await wire.find(
            "logs", shape, sort=[("ts", -1), ("_id", -1)]
        )
    assert await sql.count("logs", shape) == await wire.count("logs", shape)
    assert sql.fallbacks == {("find", "logs"): 3, ("count", "logs"): 1}
    logged = [r.getMessage() for r in caplog.records if "answered over the wire" in r.getMessage()]
    assert len(logged) == 2, logged  # once per (operation, collection, shape)


async def test_the_logs_service_exports_its_read_fallbacks(logs_service: ServiceHost) -> None:
    assert "# TYPE agentstore_read_fallbacks_total counter" in await scrape(logs_service.health_port)


async def test_the_sql_reader_refuses_a_ferretdb_release_it_was_not_written_for(
    stores: tuple[MongoStore, FerretSqlReader], mongo_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire, _ = stores
    async with reading(wire, mongo_server.sql_url, "unused") as reader:
        assert isinstance(reader, FerretSqlReader)  # the stack's FerretDB: the release it reads
    async with reading(wire, None, "unused") as reader:
        assert reader is wire  # no SQL URL: the wire, nothing probed
    assert binaries.FERRETDB_VERSION.startswith(ferretsql.FERRETDB_RELEASE)
    monkeypatch.setattr(ferretsql, "FERRETDB_RELEASE", "v2.")  # as if FerretDB moved on
    with pytest.raises(
        ConfigError, match=r"FerretDB v1\.24\.\d+ at .*reads the tables of FerretDB v2\.x only"
    ):
        async with reading(wire, mongo_server.sql_url, "unused"):
            pass


async def test_generated_sql_that_postgresql_refuses_falls_back_to_the_wire_counted(
    stores: tuple[MongoStore, FerretSqlReader], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQL the reader generated that PostgreSQL refuses (SQLSTATE class 42) is a shape the
    reader gets wrong, not a deployment fault: answered over the wire (the same documents),
    counted, not a 503."""
    wire, reader = stores
    expected = await wire.find("logs", {"agent_id": "agent1"})

    def broken(table: str, *args: Any) -> tuple[str, list[Any]]:
        return f"SELECT no_such_column FROM {table}", []  # as a generator bug would write it

    monkeypatch.setattr(ferretsql, "select", broken)
    before = sum(reader.fallbacks.values())
    got = await reader.find("logs", {"agent_id": "agent1"})
    assert sorted(d["_id"] for d in got) == sorted(d["_id"] for d in expected) and expected
    assert sum(reader.fallbacks.values()) == before + 1
