"""`agents.{agent}.rpc.checkpoint.*` (CONTRACT v1.8): an agent's graph checkpoints (LangGraph's
model) in PostgreSQL, values over `INLINE_MAX` in object storage once per content.

Large values are content-addressed per agent (`checkpoints/{agent}/{sha256}`): a put naming a
digest the service has not registered is answered `stored: false` with a presigned PUT per
missing digest; the agent uploads and sends the same put again, which registers the objects
(after checking they exist with the announced size) and stores the rows in one transaction.
A put is acknowledged once committed, so a read right after sees it; a retried put stores the
same rows again (upserts keyed by the checkpoint), never twice.

A value of 64 KiB or more comes chunked (v1.10): its chunks' digests in order, each new chunk
at an offset of a pack (an object like any other, registered the same way), the others named
bare, which the service must hold already (`missing_chunks` when it does not). A row keeps its
chunk digests end to end; `checkpoint_chunks` says where each lies.

Deletions (threads, runs, prune) drop rows, then the chunks and digests nothing refers to any
more, then their objects. Puts hold the agent's advisory lock shared and the sweep holds it exclusive, so a
digest a put has just found registered survives until that put has committed its reference.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from agentstore.errors import BadRequest
from agentstore.schemas.checkpoints import (
    CHUNK_ENTRY_BYTES,
    INLINE_BUDGET,
    MAX_PACKS,
    ChannelHistory,
    ChannelValue,
    CheckpointFound,
    CheckpointPage,
    CheckpointRecord,
    CheckpointsQuery,
    CheckpointsRemoved,
    CheckpointStep,
    CheckpointSteps,
    CheckpointStored,
    Chunk,
    CopyThread,
    DeleteCheckpoints,
    DeltaHistory,
    DeltaHistoryQuery,
    GetCheckpoint,
    GetValues,
    HistoryWrite,
    ListCheckpoints,
    Pack,
    PruneThreads,
    PutCheckpoint,
    PutWrites,
    TaskWrite,
    ThreadCopied,
    ThreadItem,
    ThreadsQuery,
    Upload,
    Value,
    Values,
    Write,
)
from agentstore.schemas.common import Page, decode_cursor, encode_cursor, iso
from agentstore_server.bus.rpc import RequestContext
from agentstore_server.lifecycle.periodic import Periodic
from agentstore_server.stores.objects import ObjectStore
from agentstore_server.stores.postgres import Executor, Gateway, PostgresStore, Record, load_queries

Q = load_queries(Path(__file__).with_name("checkpoints.sql"))
BUCKET = "checkpoints"
URL_LIFETIME = timedelta(minutes=15)
# An object not registered this long after its upload was abandoned (URLs live 15 minutes).
ABANDONED_AFTER = timedelta(hours=1)
log = logging.getLogger("agentstore.checkpoints")


def _agent(ctx: RequestContext) -> str:
    assert ctx.agent is not None  # agent-only endpoints: the subject names the agent
    return ctx.agent


def _json_object(text: str, what: str) -> str:
    """JSON text of an object PostgreSQL's jsonb can hold (it refuses the NUL character)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise BadRequest(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    if "\\u0000" in text:
        raise BadRequest(f"{what} holds a NUL character, which PostgreSQL's jsonb cannot store")
    return text


def _check_value(v: Value, where: str) -> None:
    if (v.data is None) == (v.digest is None):
        raise BadRequest(f"{where}: a value has either data or a digest")
    if not v.chunks:
        if v.packs:
            raise BadRequest(f"{where}: packs without chunks")
        return
    if v.digest is None:
        raise BadRequest(f"{where}: a chunked value has the digest of the whole, not data")
    if sum(c.size for c in v.chunks) != v.size:
        total = sum(c.size for c in v.chunks)
        raise BadRequest(f"{where}: the chunks' sizes add up to {total}, not size {v.size}")
    if len({p.digest for p in v.packs}) != len(v.packs):
        raise BadRequest(f"{where}: a pack is listed twice")
    if len(v.packs) > MAX_PACKS:
        raise BadRequest(f"{where}: {len(v.packs)} packs; a value's new chunks go in at most {MAX_PACKS}")
    for c in v.chunks:
        if c.pack is None:
            continue
        if c.pack >= len(v.packs):
            raise BadRequest(f"{where}: chunk {c.digest} names pack {c.pack} of {len(v.packs)}")
        if c.offset + c.size > v.packs[c.pack].size:
            raise BadRequest(f"{where}: chunk {c.digest} ends past its pack ({v.packs[c.pack].size} bytes)")


def _objects_of(values: Iterable[Value]) -> dict[str, int]:
    """The objects `values` name (digest -> size): whole values, and the packs of chunked ones."""
    out: dict[str, int] = {}
    for v in values:
        if v.chunks:
            out |= {p.digest: p.size for p in v.packs}
        elif v.digest is not None:
            out[v.digest] = v.size
    return out


def _bare_chunks(values: Iterable[Value]) -> list[bytes]:
    """The chunks named without a pack: the service must hold them already."""
    return list({bytes.fromhex(c.digest) for v in values for c in v.chunks if c.pack is None})


def _chunk_digests(v: Value) -> bytes | None:
    """A chunked value's chunk digests as its row keeps them: 32 bytes each, in order."""
    return b"".join(bytes.fromhex(c.digest) for c in v.chunks) if v.chunks else None


def _split(chunks: bytes) -> list[bytes]:
    return [chunks[i : i + 32] for i in range(0, len(chunks), 32)]


# What a pack's entry weighs in a reply (its digest, size and presigned URL as JSON).
PACK_ENTRY_BYTES = 1024


class _Located:
    """The chunk locations of one reply's values, and the presigned URLs of their packs."""

    def __init__(self, where: dict[bytes, Record]) -> None:
        self.where = where
        self.urls: dict[str, str] = {}


class _Budget:
    """Inline bytes left for one reply: values past it go as `deferred` (fetched apart)."""

    def __init__(self) -> None:
        self.left = INLINE_BUDGET

    def take(self, size: int) -> bool:
        # The first value of a reply always goes (a reply is never all deferred).
        if size > self.left and self.left < INLINE_BUDGET:
            return False
        self.left -= size
        return True


class Checkpoints:
    def __init__(self, pg: PostgresStore, objects: ObjectStore, bucket: str = BUCKET) -> None:
        self.pg = pg
        self.db = Gateway(pg)
        self.objects = objects
        self.bucket = bucket
        self.abandoned_after = ABANDONED_AFTER

    async def setup(self) -> None:
        await self.objects.ensure_bucket(self.bucket)

    def _key(self, agent: str, digest: str) -> str:
        return f"{agent}/{digest}"

    # -- writing -------------------------------------------------------------------
    async def _refusal(self, agent: str, values: Sequence[Value]) -> CheckpointStored | None:
        """Why a put cannot be stored yet: objects to upload (chunks it names but the service
        lacks are found under the lock, by `_swept`: no presigning needed, one query less)."""
        missing = await self._missing(agent, _objects_of(values))
        return CheckpointStored(stored=False, missing=missing) if missing else None

    async def _lacking(self, db: Any, agent: str, values: Sequence[Value]) -> list[str]:
        """The chunks named bare that the service does not hold, and all those of a value
        whose chunks would lie in more than `MAX_PACKS` packs (sent again, they gather)."""
        bare = _bare_chunks(values)
        if not bare:
            return []
        held = {bytes(r["digest"]): r["pack"] for r in await db.fetch(Q["known_chunks"], agent_id=agent,
                                                                       digests=bare)}  # fmt: skip
        lacking = {d.hex() for d in bare if d not in held}
        for v in values:
            packs = {p.digest for p in v.packs}
            packs |= {held[d] for c in v.chunks if c.pack is None and (d := bytes.fromhex(c.digest)) in held}
            if len(packs) > MAX_PACKS:
                lacking |= {c.digest for c in v.chunks if c.pack is None}
        return sorted(lacking)

    async def _missing(self, agent: str, sizes: dict[str, int]) -> list[Upload]:
        """The objects (digest -> size) the agent has not stored: registered here once found
        in storage, else a presigned PUT each."""
        if not sizes:
            return []
        known = {
            r["digest"]
            for r in await self.db.run.fetch(Q["known_objects"], agent_id=agent, digests=list(sizes))
        }
        unknown = [d for d in sizes if d not in known]
        infos = await asyncio.gather(*(self.objects.stat(self.bucket, self._key(agent, d)) for d in unknown))
        found = [
            d for d, info in zip(unknown, infos, strict=True) if info is not None and info.size == sizes[d]
        ]
        if found:
            await self.db.run.execute(
                Q["add_objects"], agent_id=agent, digests=found, sizes=[sizes[d] for d in found]
            )
        absent = [d for d in unknown if d not in found]
        urls = await asyncio.gather(
            *(self.objects.presign_put(self.bucket, self._key(agent, d), URL_LIFETIME) for d in absent)
        )
        return [Upload(digest=d, url=u) for d, u in zip(absent, urls, strict=True)]

    async def _swept(self, tx: Any, agent: str, values: Sequence[Value]) -> CheckpointStored | None:
        """Under the agent's lock: objects and chunks found registered before it was taken and
        swept since (a delete's sweep ran in between). Asked for again, or none: then nothing
        the put names can go until it commits."""
        digests = set(_objects_of(values))
        if not digests and not any(v.chunks for v in values):
            return None
        known = (
            {r["digest"] for r in await tx.fetch(Q["known_objects"], agent_id=agent, digests=list(digests))}
            if digests
            else set()
        )
        gone = sorted(digests - known)
        lacking = await self._lacking(tx, agent, values)
        if not gone and not lacking:
            return None
        urls = await asyncio.gather(
            *(self.objects.presign_put(self.bucket, self._key(agent, d), URL_LIFETIME) for d in gone)
        )
        missing = [Upload(digest=d, url=u) for d, u in zip(gone, urls, strict=True)]
        return CheckpointStored(stored=False, missing=missing, missing_chunks=lacking)

    @staticmethod
    def _placed(values: Sequence[Value]) -> dict[str, list[Any]]:
        """Where the chunks new in the put lie, as the put's statement takes them (a chunk
        sent again in another pack moves there: that is how a spread value gathers)."""
        rows = {
            bytes.fromhex(c.digest): (v.packs[c.pack].digest, c.offset, c.size)
            for v in values for c in v.chunks if c.pack is not None
        }  # fmt: skip
        return dict(chunk_digests=list(rows), chunk_packs=[r[0] for r in rows.values()],
                    chunk_offsets=[r[1] for r in rows.values()], chunk_sizes=[r[2] for r in rows.values()])  # fmt: skip

    async def put(self, ctx: RequestContext, q: PutCheckpoint) -> CheckpointStored:
        agent = _agent(ctx)
        _check_value(q.checkpoint, "checkpoint")
        for cv in q.values:
            _check_value(cv.value, f"channel {cv.channel}")
        metadata_json = _json_object(q.metadata_json, "metadata_json")
        run_id = json.loads(metadata_json).get("run_id")
        values = [q.checkpoint, *(cv.value for cv in q.values)]
        if refused := await self._refusal(agent, values):
            return refused
        async with self.pg.transaction() as tx:
            await tx.execute(Q["lock_shared"], agent_id=agent)
            if refused := await self._swept(tx, agent, values):
                return refused
            if q.ttl_minutes is not None:
                # First in the transaction: a sweep deleting the thread meanwhile waits for it,
                # and then finds it no longer expired.
                await tx.execute(
                    Q["set_thread_ttl"], agent_id=agent, thread_id=q.thread_id, ttl_minutes=q.ttl_minutes
                )
            await tx.execute(
                Q["put_checkpoint"], **self._placed(values), agent_id=agent, thread_id=q.thread_id, checkpoint_ns=q.checkpoint_ns,
                checkpoint_id=q.checkpoint_id, parent_id=q.parent_id,
                run_id=str(run_id) if run_id is not None else None, type=q.checkpoint.type,
                data=q.checkpoint.data, digest=q.checkpoint.digest, size=_size(q.checkpoint),
                chunks=_chunk_digests(q.checkpoint),
                metadata_type=q.metadata.type, metadata=q.metadata.data or b"",
                metadata_json=metadata_json, versions=json.dumps(q.versions),
            )  # fmt: skip
            if q.values:
                await tx.execute(
                    Q["put_blobs"], agent_id=agent, thread_id=q.thread_id, checkpoint_ns=q.checkpoint_ns,
                    channels=[cv.channel for cv in q.values], versions=[cv.version for cv in q.values],
                    types=[cv.value.type for cv in q.values], datas=[cv.value.data for cv in q.values],
                    digests=[cv.value.digest for cv in q.values], sizes=[_size(cv.value) for cv in q.values],
                    chunks=[_chunk_digests(cv.value) for cv in q.values],
                )  # fmt: skip
        return CheckpointStored(stored=True)

    async def put_writes(self, ctx: RequestContext, q: PutWrites) -> CheckpointStored:
        agent = _agent(ctx)
        for w in q.writes:
            _check_value(w.value, f"write {w.task_id}/{w.idx}")
        values = [w.value for w in q.writes]
        if refused := await self._refusal(agent, values):
            return refused
        if not q.writes:
            return CheckpointStored(stored=True)
        async with self.pg.transaction() as tx:
            await tx.execute(Q["lock_shared"], agent_id=agent)
            if refused := await self._swept(tx, agent, values):
                return refused
            await tx.execute(
                Q["put_writes"], **self._placed(values), agent_id=agent, thread_id=q.thread_id, checkpoint_ns=q.checkpoint_ns,
                checkpoint_id=q.checkpoint_id, task_ids=[w.task_id for w in q.writes],
                idxs=[w.idx for w in q.writes], channels=[w.channel for w in q.writes],
                task_paths=[w.task_path for w in q.writes], types=[w.value.type for w in q.writes],
                datas=[w.value.data for w in q.writes], digests=[w.value.digest for w in q.writes],
                sizes=[_size(w.value) for w in q.writes], chunks=[_chunk_digests(w.value) for w in q.writes],
            )  # fmt: skip
        return CheckpointStored(stored=True)

    # -- reading -------------------------------------------------------------------
    async def get(self, ctx: RequestContext, q: GetCheckpoint) -> CheckpointFound:
        agent = _agent(ctx)
        if q.refresh_ttl:
            await self.db.run.execute(Q["refresh_thread_ttl"], agent_id=agent, thread_id=q.thread_id)
        async with self.pg.snapshot() as run:  # a sweep deleting the thread meanwhile: all or none of it
            rows = await run.fetch(
                Q["list_checkpoints"], agent_id=agent, thread_id=q.thread_id, checkpoint_ns=q.checkpoint_ns,
                checkpoint_id=q.checkpoint_id, before=None, filter=None, after_id=None, after_thread=None,
                after_ns=None, limit=1,
            )  # fmt: skip
            if not rows:
                return CheckpointFound(checkpoint=None)
            return CheckpointFound(checkpoint=(await self._records(run, agent, rows, _Budget()))[0])

    async def listing(self, ctx: RequestContext, q: ListCheckpoints) -> CheckpointPage:
        agent = _agent(ctx)
        if q.refresh_ttl and q.thread_id is not None and q.cursor is None:
            await self.db.run.execute(Q["refresh_thread_ttl"], agent_id=agent, thread_id=q.thread_id)
        after: list[str | None] = [None, None, None]
        if q.cursor is not None:
            try:
                after = json.loads(q.cursor)
                assert isinstance(after, list) and len(after) == 3 and all(isinstance(a, str) for a in after)
            except (ValueError, AssertionError):
                raise BadRequest("cursor is not one this endpoint gave") from None
        filters = _json_object(q.filter_json, "filter_json") if q.filter_json is not None else None
        async with self.pg.snapshot() as run:
            rows = await run.fetch(
                Q["list_checkpoints"], agent_id=agent, thread_id=q.thread_id, checkpoint_ns=q.checkpoint_ns,
                checkpoint_id=q.checkpoint_id, before=q.before, filter=filters,
                after_id=after[0], after_thread=after[1], after_ns=after[2], limit=q.limit + 1,
            )  # fmt: skip
            more = len(rows) > q.limit
            rows = rows[: q.limit]
            items = await self._records(run, agent, rows, _Budget())
        last = rows[-1] if more and rows else None
        cursor = (
            json.dumps([last["checkpoint_id"], last["thread_id"], last["checkpoint_ns"]]) if last else None
        )
        return CheckpointPage(items=items, next_cursor=cursor)

    async def _records(
        self, run: Executor, agent: str, rows: Sequence[Record], budget: _Budget
    ) -> list[CheckpointRecord]:
        """The records of checkpoint `rows`, read on `run`: the snapshot the rows came from."""
        keys = dict(
            thread_ids=[r["thread_id"] for r in rows], checkpoint_nss=[r["checkpoint_ns"] for r in rows]
        )
        blobs = await run.fetch(Q["checkpoint_blobs"], agent_id=agent, **keys,
                                versions=[r["versions"] for r in rows])  # fmt: skip
        writes = await run.fetch(Q["checkpoint_writes"], agent_id=agent, **keys,
                                 checkpoint_ids=[r["checkpoint_id"] for r in rows])  # fmt: skip
        located = await self._locate(run, agent, [*rows, *blobs, *writes])
        values: list[list[ChannelValue]] = [[] for _ in rows]
        pending: list[list[Write]] = [[] for _ in rows]
        for b in blobs:
            values[b["ord"] - 1].append(
                ChannelValue(
                    channel=b["channel"],
                    version=b["version"],
                    value=await self._value(agent, b, budget, located),
                )
            )
        for w in writes:
            pending[w["ord"] - 1].append(
                Write(task_id=w["task_id"], idx=w["idx"], channel=w["channel"], task_path=w["task_path"],
                      value=await self._value(agent, w, budget, located))
            )  # fmt: skip
        out = []
        for i, r in enumerate(rows):
            out.append(
                CheckpointRecord(
                    thread_id=r["thread_id"], checkpoint_ns=r["checkpoint_ns"], checkpoint_id=r["checkpoint_id"],
                    parent_id=r["parent_id"], checkpoint=await self._value(agent, r, budget, located),
                    metadata=Value(type=r["metadata_type"], data=bytes(r["metadata"])),
                    values=values[i], writes=pending[i], created_at=iso(r["created_at"]),
                )
            )  # fmt: skip
        return out

    async def _locate(self, run: Executor, agent: str, rows: Iterable[Record]) -> _Located:
        """Where the chunks of the chunked rows among `rows` lie, in one query on the snapshot
        `run` the rows came from (read apart, a sweep could drop chunks in between)."""
        digests = {d for r in rows if r["chunks"] is not None for d in _split(bytes(r["chunks"]))}
        found = (
            await run.fetch(Q["chunk_locations"], agent_id=agent, digests=list(digests)) if digests else []
        )
        return _Located({bytes(r["digest"]): r for r in found})

    async def _value(self, agent: str, row: Record, budget: _Budget, located: _Located) -> Value:
        if row["chunks"] is not None:
            return await self._chunked(agent, row, budget, located)
        if row["digest"] is not None:
            url = await self.objects.presign_get(self.bucket, self._key(agent, row["digest"]), URL_LIFETIME)
            return Value(type=row["type"], digest=row["digest"], size=row["size"], url=url)
        data = bytes(row["data"])
        if not budget.take(len(data)):
            return Value(type=row["type"], size=len(data), deferred=True)
        return Value(type=row["type"], data=data, size=len(data))

    async def _chunked(self, agent: str, row: Record, budget: _Budget, located: _Located) -> Value:
        digests = _split(bytes(row["chunks"]))
        lost = [d for d in digests if d not in located.where]
        if lost:  # a row names what the sweep keeps while it does: never expected
            raise RuntimeError(f"chunk {lost[0].hex()} of value {row['digest']} of {agent} has no location")
        places = [located.where[d] for d in digests]
        packs: dict[str, int] = {}
        for p in places:
            packs.setdefault(p["pack"], len(packs))
        if not budget.take(len(digests) * CHUNK_ENTRY_BYTES + len(packs) * PACK_ENTRY_BYTES):
            return Value(type=row["type"], size=row["size"], deferred=True)
        for digest in packs:
            if digest not in located.urls:
                located.urls[digest] = await self.objects.presign_get(
                    self.bucket, self._key(agent, digest), URL_LIFETIME
                )
        sizes = {p["pack"]: int(p["pack_size"]) for p in places}
        out = [Pack(digest=d, size=sizes[d], url=located.urls[d]) for d in packs]
        chunks = [
            Chunk(digest=d.hex(), size=p["size"], pack=packs[p["pack"]], offset=p["pack_offset"])
            for d, p in zip(digests, places, strict=True)
        ]
        return Value(type=row["type"], digest=row["digest"], size=row["size"], chunks=chunks, packs=out)

    async def values(self, ctx: RequestContext, q: GetValues) -> Values:
        agent = _agent(ctx)
        rows: list[Record] = []
        where = dict(agent_id=agent, thread_id=q.thread_id, checkpoint_ns=q.checkpoint_ns)
        async with self.pg.snapshot() as run:  # a sweep deleting the thread meanwhile: all or none of it
            for ref in q.refs:
                if ref.channel is not None and ref.version is not None:
                    row = await run.fetchrow(Q["one_blob"], **where, channel=ref.channel, version=ref.version)
                elif ref.task_id is not None and ref.idx is not None:
                    row = await run.fetchrow(
                        Q["one_write"],
                        **where,
                        checkpoint_id=q.checkpoint_id,
                        task_id=ref.task_id,
                        idx=ref.idx,
                    )
                else:
                    raise BadRequest("a ref names a channel and version, or a task_id and idx")
                if row is None:
                    raise BadRequest(f"no such value: {ref}")
                rows.append(row)
            budget, located = _Budget(), await self._locate(run, agent, rows)
        return Values(values=[await self._value(agent, row, budget, located) for row in rows])

    async def history(self, ctx: RequestContext, q: DeltaHistoryQuery) -> DeltaHistory:
        """LangGraph's `get_delta_channel_history`, in one request: walk the target's parent
        chain (nearest first); each channel collects the writes of each ancestor until one
        holds a stored value for it (its seed, whose own writes are collected too)."""
        agent = _agent(ctx)
        where = dict(agent_id=agent, thread_id=q.thread_id, checkpoint_ns=q.checkpoint_ns)
        async with self.pg.snapshot() as run:
            target = await run.fetch(
                Q["list_checkpoints"], **where, checkpoint_id=q.checkpoint_id, before=None, filter=None,
                after_id=None, after_thread=None, after_ns=None, limit=1,
            )  # fmt: skip
            channels = list(dict.fromkeys(q.channels))
            empty = DeltaHistory(channels=[ChannelHistory(channel=ch, writes=[]) for ch in channels])
            if not target or target[0]["parent_id"] is None:
                return empty
            chain = await run.fetch(Q["parent_chain"], **where, start=target[0]["parent_id"])
            versions = [json.loads(c["versions"]) for c in chain]
            pairs = {(ch, v[ch]) for v in versions for ch in channels if ch in v}
            blobs = {
                (b["channel"], b["version"]): b
                for b in await run.fetch(
                    Q["blobs_at"], **where, channels=[p[0] for p in pairs], versions=[p[1] for p in pairs]
                )  # fmt: skip
            }
            writes: dict[str, list[Record]] = {}
            for w in await run.fetch(Q["writes_of_channels"], **where, channels=channels,
                                     checkpoint_ids=[c["checkpoint_id"] for c in chain]):  # fmt: skip
                writes.setdefault(w["checkpoint_id"], []).append(w)
            budget = _Budget()
            located = await self._locate(
                run, agent, [*blobs.values(), *(w for ws in writes.values() for w in ws)]
            )
        collected: dict[str, list[HistoryWrite]] = {ch: [] for ch in channels}
        seeds: dict[str, tuple[Record, str, str]] = {}
        remaining = set(channels)
        for c, v in zip(chain, versions, strict=True):
            if not remaining:
                break
            found = {ch: blobs[(ch, v[ch])] for ch in remaining
                     if ch in v and (ch, v[ch]) in blobs and blobs[(ch, v[ch])]["type"] != "empty"}  # fmt: skip
            for w in reversed(writes.get(c["checkpoint_id"], [])):
                if w["channel"] in remaining:
                    collected[w["channel"]].append(HistoryWrite(
                        checkpoint_id=c["checkpoint_id"],
                        write=Write(task_id=w["task_id"], idx=w["idx"], channel=w["channel"], task_path=w["task_path"],
                                    value=await self._value(agent, w, budget, located)),
                    ))  # fmt: skip
            for ch, blob in found.items():
                seeds[ch] = (blob, c["checkpoint_id"], v[ch])
                remaining.discard(ch)
        out = []
        for ch in channels:
            seed = seeds.get(ch)
            out.append(ChannelHistory(
                channel=ch, writes=collected[ch][::-1],
                seed=await self._value(agent, seed[0], budget, located) if seed else None,
                seed_checkpoint_id=seed[1] if seed else None, seed_version=seed[2] if seed else None,
            ))  # fmt: skip
        return DeltaHistory(channels=out)

    # -- removing ------------------------------------------------------------------
    async def delete(self, ctx: RequestContext, q: DeleteCheckpoints) -> CheckpointsRemoved:
        agent = _agent(ctx)
        removed = 0
        if q.thread_ids:
            row = await self.db.run.fetchrow(Q["delete_threads"], agent_id=agent, thread_ids=q.thread_ids)
            removed += int(row["checkpoints"]) if row else 0
        if q.run_ids:
            async with self.pg.transaction() as tx:
                gone = await tx.fetch(Q["delete_runs"], agent_id=agent, run_ids=q.run_ids)
                await self._drop_with(tx, agent, gone)
            removed += len(gone)
        return CheckpointsRemoved(checkpoints=removed, objects=await self.sweep(agent))

    async def _drop_with(self, tx: Any, agent: str, gone: Sequence[Record]) -> None:
        """The writes of deleted checkpoints, and the values none left names."""
        if not gone:
            return
        await tx.execute(
            Q["delete_writes_of"], agent_id=agent, thread_ids=[g["thread_id"] for g in gone],
            checkpoint_nss=[g["checkpoint_ns"] for g in gone], checkpoint_ids=[g["checkpoint_id"] for g in gone],
        )  # fmt: skip
        await tx.execute(
            Q["drop_unreferenced_blobs"], agent_id=agent, thread_ids=sorted({g["thread_id"] for g in gone})
        )

    async def prune(self, ctx: RequestContext, q: PruneThreads) -> CheckpointsRemoved:
        agent = _agent(ctx)
        if q.strategy == "delete":
            return await self.delete(ctx, DeleteCheckpoints(thread_ids=q.thread_ids))
        removed = 0
        for thread in dict.fromkeys(q.thread_ids):
            async with self.pg.transaction() as tx:
                chain = await tx.fetch(Q["thread_chain"], agent_id=agent, thread_id=thread)
                kept = _kept(chain)
                gone = await tx.fetch(
                    Q["delete_unkept"], agent_id=agent, thread_id=thread,
                    checkpoint_nss=[k[0] for k in kept], checkpoint_ids=[k[1] for k in kept],
                )  # fmt: skip
                await self._drop_with(tx, agent, gone)
            removed += len(gone)
        return CheckpointsRemoved(checkpoints=removed, objects=await self.sweep(agent))

    async def copy(self, ctx: RequestContext, q: CopyThread) -> ThreadCopied:
        agent = _agent(ctx)
        if q.source_thread_id == q.target_thread_id:
            raise BadRequest("source and target thread are the same")
        async with self.pg.transaction() as tx:
            await tx.execute(Q["lock_shared"], agent_id=agent)  # the digests copied stay referenced
            row = await tx.fetchrow(
                Q["copy_checkpoints"], agent_id=agent, source=q.source_thread_id, target=q.target_thread_id
            )
        return ThreadCopied(checkpoints=int(row["checkpoints"]) if row else 0)

    async def sweep_expired(self, limit: int = 500) -> int:
        """Deletes threads whose TTL passed (their checkpoints, writes and the values no other
        thread names, then those objects); how many threads."""
        expired: dict[str, list[str]] = {}
        for r in await self.db.run.fetch(Q["expired_threads"], limit=limit):
            expired.setdefault(r["agent_id"], []).append(r["thread_id"])
        gone = 0
        for agent, threads in expired.items():
            async with self.pg.transaction() as tx:
                still = [r["thread_id"] for r in await tx.fetch(
                    Q["drop_expired_threads"], agent_id=agent, thread_ids=threads
                )]  # fmt: skip
                if still:
                    await tx.execute(Q["delete_threads"], agent_id=agent, thread_ids=still)
            if still:
                await self.sweep(agent)
                gone += len(still)
        return gone

    def sweeper(self, every_seconds: float) -> Periodic:
        async def sweep() -> str | None:
            gone = await self.sweep_expired()
            return f"{gone} expired threads deleted" if gone else None

        return Periodic("checkpoint TTL sweep", every_seconds, sweep)

    async def sweep(self, agent: str) -> int:
        """Drop the agent's digests nothing refers to, then their objects (an object left by a
        failed removal is found again by the next put of its content, or the next sweep's); and
        objects uploaded but never registered (an agent that stopped between its upload and
        the put's retry), once older than any upload URL could be."""
        async with self.pg.transaction() as tx:
            await tx.execute(Q["lock_exclusive"], agent_id=agent)
            await tx.execute(Q["sweep_chunks"], agent_id=agent)
            digests = [r["digest"] for r in await tx.fetch(Q["sweep_objects"], agent_id=agent)]
            registered = {r["digest"] for r in await tx.fetch(Q["agent_objects"], agent_id=agent)}
            stale = datetime.now(UTC) - self.abandoned_after
            async for info in self.objects.list(self.bucket, f"{agent}/"):
                digest = info.key.rsplit("/", 1)[-1]
                if digest not in registered and info.modified is not None and info.modified < stale:
                    digests.append(digest)
        digests = list(dict.fromkeys(digests))
        for digest in digests:
            try:
                await self.objects.remove(self.bucket, self._key(agent, digest))
            except Exception as exc:  # the row is gone: at worst an object stays behind
                log.warning("could not remove checkpoint object %s of %s: %s", digest, agent, exc)
        return len(digests)


class Views:
    """What evaluators and the console read of checkpoints: threads, and a thread's steps."""

    def __init__(self, pg: PostgresStore) -> None:
        self.db = Gateway(pg)

    async def threads(self, ctx: RequestContext, q: ThreadsQuery) -> Page[ThreadItem]:
        ctx.check_agent(q.agent_id)
        key, after_thread = (None, None)
        if q.cursor is not None:
            key, after_thread = decode_cursor(q.cursor, 2)
        if q.order == "bytes":
            after_bytes = _parse_int(key) if key is not None else None
            rows = await self.db.run.fetch(Q["list_threads_by_size"], agent_id=q.agent_id, after_bytes=after_bytes,
                                           after_thread=after_thread, limit=q.limit + 1)  # fmt: skip
        else:
            after_ts = _parse_time(key) if key is not None else None
            rows = await self.db.run.fetch(Q["list_threads"], agent_id=q.agent_id, after_ts=after_ts,
                                           after_thread=after_thread, limit=q.limit + 1)  # fmt: skip
        more, rows = len(rows) > q.limit, rows[: q.limit]
        items = [ThreadItem(thread_id=r["thread_id"], checkpoints=r["checkpoints"], namespaces=r["namespaces"],
                            newest_checkpoint_id=r["newest_checkpoint_id"], updated_at=iso(r["updated_at"]),
                            bytes=r["bytes"] if q.order == "bytes" else None)
                 for r in rows]  # fmt: skip
        last = rows[-1] if more and rows else None
        if last is None:
            cursor = None
        elif q.order == "bytes":
            cursor = encode_cursor(str(last["bytes"]), last["thread_id"])
        else:
            cursor = encode_cursor(last["updated_at"].isoformat(), last["thread_id"])
        return Page[ThreadItem](items=items, next_cursor=cursor)

    async def steps(self, ctx: RequestContext, q: CheckpointsQuery) -> CheckpointSteps:
        ctx.check_agent(q.agent_id)
        after = decode_cursor(q.cursor, 1)[0] if q.cursor is not None else None
        where = dict(agent_id=q.agent_id, thread_id=q.thread_id, checkpoint_ns=q.checkpoint_ns)
        rows = await self.db.run.fetch(Q["thread_steps"], **where, after=after, limit=q.limit + 1)
        more, rows = len(rows) > q.limit, rows[: q.limit]
        versions = {r["checkpoint_id"]: json.loads(r["versions"]) for r in rows}
        parents = [r["parent_id"] for r in rows if r["parent_id"] and r["parent_id"] not in versions]
        if parents:
            for p in await self.db.run.fetch(Q["versions_of"], **where, checkpoint_ids=parents):
                versions[p["checkpoint_id"]] = json.loads(p["versions"])
        changed = [
            {ch: v for ch, v in versions[r["checkpoint_id"]].items()
             if versions.get(r["parent_id"] or "", {}).get(ch) != v}
            for r in rows
        ]  # fmt: skip
        keys = dict(thread_ids=[q.thread_id] * len(rows), checkpoint_nss=[q.checkpoint_ns] * len(rows))
        blobs = await self.db.run.fetch(Q["checkpoint_blobs"], agent_id=q.agent_id, **keys,
                                        versions=[r["versions"] for r in rows])  # fmt: skip
        writes = await self.db.run.fetch(Q["checkpoint_writes"], agent_id=q.agent_id, **keys,
                                         checkpoint_ids=[r["checkpoint_id"] for r in rows])  # fmt: skip
        previews: list[dict[str, str]] = [{} for _ in rows]
        sizes = [int(r["size"]) for r in rows]
        for b in blobs:  # every channel's value at each checkpoint; the new ones count to its bytes
            previews[b["ord"] - 1][b["channel"]] = preview(b["type"], b["data"], b["size"])
            if b["channel"] in changed[b["ord"] - 1]:
                sizes[b["ord"] - 1] += int(b["size"])
        steps_writes: list[list[TaskWrite]] = [[] for _ in rows]
        for w in writes:
            steps_writes[w["ord"] - 1].append(
                TaskWrite(
                    task_id=w["task_id"],
                    channel=w["channel"],
                    preview=preview(w["type"], w["data"], w["size"]),
                )
            )
        items = []
        for i, r in enumerate(rows):
            meta = json.loads(r["metadata_json"])
            step = meta.get("step")
            items.append(CheckpointStep(
                checkpoint_id=r["checkpoint_id"], parent_id=r["parent_id"],
                step=step if isinstance(step, int) else None,
                source=str(meta["source"]) if meta.get("source") is not None else None,
                created_at=iso(r["created_at"]),
                changed={ch: previews[i].get(ch, "(kept)") for ch in changed[i]},
                state={ch: v for ch, v in sorted(previews[i].items()) if v != "(empty)"},
                writes=steps_writes[i], bytes=sizes[i],
            ))  # fmt: skip
        namespaces = await self.db.run.fetch(
            Q["thread_namespaces"], agent_id=q.agent_id, thread_id=q.thread_id
        )
        return CheckpointSteps(
            items=items, next_cursor=encode_cursor(rows[-1]["checkpoint_id"]) if more and rows else None,
            namespaces=[n["checkpoint_ns"] for n in namespaces],
        )  # fmt: skip


PREVIEW_CHARS = 300


def preview(kind: str, data: bytes | None, size: int) -> str:
    """A value as a person reads it, without the agent's classes: LangGraph's msgpack decoded
    (its objects shown by class and fields), JSON as is, anything else by type and size."""
    if data is None:
        return f"({size:,} bytes in object storage)"
    if kind == "empty":
        return "(empty)"
    if kind == "null":
        return "None"
    try:
        if kind == "msgpack":
            text = json.dumps(
                msgspec.msgpack.decode(bytes(data), ext_hook=_ext), default=str, ensure_ascii=False
            )
        elif kind == "json":
            text = bytes(data).decode()
        else:
            return f"({kind}, {len(data):,} bytes)"
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError):
        return f"({kind}, {len(data):,} bytes)"
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _ext(code: int, data: memoryview) -> Any:
    """LangGraph's msgpack extensions hold (module, class, fields, ...): the class and fields."""
    try:
        inner = msgspec.msgpack.decode(bytes(data), ext_hook=_ext)
    except msgspec.DecodeError:
        return f"<ext {code}>"
    if isinstance(inner, list | tuple) and len(inner) >= 3 and isinstance(inner[1], str):
        return {"__class__": inner[1], "fields": inner[2]}
    return inner


def _parse_int(text: Any) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise BadRequest("malformed cursor; pass back next_cursor exactly as received") from None


def _parse_time(text: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        raise BadRequest("malformed cursor; pass back next_cursor exactly as received") from None


def _size(v: Value) -> int:
    return len(v.data) if v.data is not None else v.size


def _kept(chain: Sequence[Record]) -> set[tuple[str, str]]:
    """What `keep_latest` keeps of a thread: each namespace's newest checkpoint; for a graph
    with delta channels, its ancestors back to the oldest snapshot any channel still needs
    (the metadata counts the supersteps since each channel's); a subgraph's root-graph
    checkpoint when it is stored."""
    by_ns: dict[str, dict[str, Record]] = {}
    for r in chain:
        by_ns.setdefault(r["checkpoint_ns"], {})[r["checkpoint_id"]] = r
    kept: set[tuple[str, str]] = set()
    for ns, rows in by_ns.items():
        head = rows[max(rows)]
        meta = json.loads(head["metadata_json"]) if isinstance(head["metadata_json"], str) else {}
        counters = meta.get("counters_since_delta_snapshot") or {}
        back = max((int(c[1]) for c in counters.values() if isinstance(c, list) and len(c) == 2), default=0)
        node: Record | None = head
        for _ in range(back + 1):
            if node is None:
                break
            kept.add((ns, node["checkpoint_id"]))
            node = rows.get(node["parent_id"]) if node["parent_id"] else None
        root = (meta.get("parents") or {}).get("") if ns else None
        if isinstance(root, str) and root in by_ns.get("", {}):
            kept.add(("", root))
    return kept
