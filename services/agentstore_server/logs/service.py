"""The logs service's declaration: its stream, handlers, endpoints and store."""

from __future__ import annotations

from collections import Counter
from contextlib import AsyncExitStack

from agentstore import contract
from agentstore.errors import ConfigError, StoreMisconfigured
from agentstore_server.bus.ingest import Handler, ingests
from agentstore_server.bus.rpc import bind
from agentstore_server.config import Settings
from agentstore_server.lifecycle.metrics import CountsCollector
from agentstore_server.lifecycle.runner import ServiceSpec, Wiring
from agentstore_server.logs import (
    agents,
    conversations,
    events,
    logs,
    memories,
    outputs,
    sessions,
    store_items,
    traces,
)
from agentstore_server.logs.collections import AGE_FIELD, COLLECTIONS
from agentstore_server.logs.retention import sweeper
from agentstore_server.stores.mongo import MongoStore
from agentstore_server.stores.postgres import PostgresStore
from agentstore_server.stores.readers import FerretSqlReader, reading

# Expired store items are invisible at once; the sweep only reclaims their space.
STORE_SWEEP_SECONDS = 300.0


async def build(settings: Settings, stack: AsyncExitStack) -> Wiring:
    unknown = set(settings.retention_days) - set(AGE_FIELD) - {traces.RETENTION_KEY}
    if unknown:
        raise ConfigError(
            f"RETENTION_DAYS names unknown collections {sorted(unknown)}; it takes "
            f"{sorted([*AGE_FIELD, traces.RETENTION_KEY])}"
        )
    documents_days = {k: v for k, v in settings.retention_days.items() if k in AGE_FIELD}
    mongo = await stack.enter_async_context(MongoStore(settings.mongodb_url, settings.mongodb_db))
    # Reads in SQL from FerretDB's tables where MONGODB_SQL_URL is set (probed: the release the
    # reader was written for, or a refusal naming the fix), else over the wire.
    reader = await stack.enter_async_context(reading(mongo, settings.mongodb_sql_url, settings.mongodb_db))
    fallbacks = reader.fallbacks if isinstance(reader, FerretSqlReader) else Counter[tuple[str, str]]()
    for collection in COLLECTIONS:
        await mongo.ensure_indexes(collection.name, collection.indexes)
    await mongo.drop_indexes(logs.COLLECTION, logs.OBSOLETE_INDEXES)
    log_store = logs.Logs(mongo, reader)
    memory_store = memories.Memories(mongo, reader)
    conversation_store = conversations.Conversations(mongo, reader)
    event_store = events.Events(mongo, reader)
    output_store = outputs.Outputs(mongo, reader)
    fleet = agents.Agents(mongo, reader)
    session_store = sessions.Sessions(mongo, reader)
    # The memory store (LangGraph's BaseStore) in PostgreSQL: an item, its vectors (pgvector
    # HNSW) and its text index in one transaction. Approximate searches have a pool of
    # their own, whose settings make every statement on it walk the index (NEAREST_SETTINGS).
    pg = await stack.enter_async_context(PostgresStore(settings.postgres_url))
    nearest = await stack.enter_async_context(
        PostgresStore(settings.postgres_url, settings=store_items.NEAREST_SETTINGS)
    )
    try:
        await pg.migrate("logs", store_items.MIGRATIONS)
    except StoreMisconfigured as exc:
        if "vector" in str(exc):
            raise store_items.no_vector_extension(exc, settings.postgres_url) from None
        raise
    memory_items = store_items.StoreItems(pg, nearest)
    await memory_items.setup()
    await store_items.move_from_mongo(mongo, pg)
    # Spans beside the memory store, priced at ingest by the operator's table (MODEL_PRICES).
    trace_store = traces.Traces(pg, settings.model_prices)
    writers = {
        "logs": Handler(logs.decode_log, log_store.write),
        "memories": Handler(memories.decode_memory, memory_store.write),
        "conversations": Handler(conversations.decode_conversation, conversation_store.write_conversations),
        "messages": Handler(conversations.decode_message_doc, conversation_store.write_messages),
        "events": Handler(events.decode_event, event_store.write),
        "outputs": Handler(outputs.decode_output, output_store.write),
        "spans": Handler(trace_store.decode, trace_store.write),
    }
    # Whatever an agent stores on LOGS marks it seen (`query.agents`).
    writers = {kind: Handler(h.decode, h.write, follow_up=fleet.seen) for kind, h in writers.items()}
    return Wiring(
        ingests=ingests("logs", writers),
        endpoints=bind(
            "logs",
            {
                contract.QUERY_LOGS: log_store.query,
                contract.QUERY_MEMORIES: memory_store.query,
                contract.QUERY_CONVERSATIONS: conversation_store.query_list,
                contract.QUERY_CONVERSATION: conversation_store.query_one,
                contract.QUERY_MESSAGES: conversation_store.query_messages,
                contract.QUERY_EVENTS: event_store.query,
                contract.QUERY_OUTPUTS: output_store.query,
                contract.QUERY_AGENTS: fleet.query,
                contract.QUERY_TRACES: trace_store.query,
                contract.QUERY_TRACE: trace_store.query_one,
                contract.SESSION_ADD: session_store.add,
                contract.SESSION_ITEMS: session_store.items,
                contract.SESSION_POP: session_store.pop,
                contract.SESSION_CLEAR: session_store.clear,
                contract.STORE_BATCH: memory_items.batch,
                contract.QUERY_STORE: memory_items.query,
                contract.QUERY_SESSIONS: session_store.query_list,
                contract.QUERY_SESSION: session_store.query_one,
            },
        ),
        checks={"mongodb": mongo.ping, "postgres": pg.ping},
        collectors=[
            CountsCollector(
                "agentstore_read_fallbacks",
                "reads the FerretDB SQL path could not answer, answered "
                "over the wire instead (slower on large collections)",
                ["operation", "collection"],
                lambda: fallbacks,
            )
        ],
        background=[
            sweeper(mongo, documents_days, settings.retention_sweep_seconds),
            store_items.sweeper(pg, STORE_SWEEP_SECONDS),
            *traces.sweepers(trace_store, settings.retention_days, settings.retention_sweep_seconds),
        ],
    )


SPEC = ServiceSpec(name="logs", build=build)
