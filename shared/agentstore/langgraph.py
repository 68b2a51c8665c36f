"""LangGraph on agentstore: `AgentstoreSaver`, a checkpointer (a graph's state at every step:
interrupts, resumes, time travel, forks), and `AgentstoreStore`, long-term memory, both kept
by agentstore's services over NATS: nothing in the agent talks to a database.

    from agentstore import AgentClient
    from agentstore.langgraph import AgentstoreSaver, AgentstoreStore

    async with await AgentClient.connect(None, "planner-1") as client:
        graph = builder.compile(checkpointer=AgentstoreSaver(client), store=AgentstoreStore(client))
        await graph.ainvoke(inputs, {"configurable": {"thread_id": "ticket-42"}})

Checkpoints belong to the client's agent (its subjects, its permissions): another agent's
threads are not reachable. Values are serialized here by the saver's serializer (LangGraph's
own); a value over 16 KiB goes to object storage by a presigned PUT, named by its SHA-256, so
a large channel that does not change between steps is uploaded and stored once, and read back
once per process (kept in a bounded cache, checked against its digest). A value of 64 KiB or
more is cut by content (FastCDC): one that grows or is edited in place uploads only the
chunks that changed, all a put's new chunks in one object. `aput` returns when the checkpoint
is committed: a read right after sees it.

`pip install 'agentstore[langgraph]'` brings LangGraph.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.store.base import (
    BaseStore,
    Embeddings,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    ensure_embeddings,
    get_text_at_path,
    tokenize_path,
)
from langgraph.store.base.embed import EmbeddingsLambda
from pyfastcdc import FastCDC

from agentstore import contract
from agentstore.client import AgentClient, http_get, http_put
from agentstore.errors import ObjectGone, Unavailable
from agentstore.schemas import store as st
from agentstore.schemas.checkpoints import (
    CHUNKED_MIN,
    INLINE_BUDGET,
    INLINE_MAX,
    MAX_LIST,
    MAX_TTL_MINUTES,
    ChannelValue,
    CheckpointRecord,
    CheckpointStored,
    Chunk,
    CopyThread,
    DeleteCheckpoints,
    DeltaHistoryQuery,
    GetCheckpoint,
    GetValues,
    ListCheckpoints,
    Pack,
    PruneThreads,
    PutCheckpoint,
    PutWrites,
    Value,
    ValueRef,
    Write,
)
from agentstore.schemas.store import MAX_OPS as MAX_STORE_OPS
from agentstore.schemas.store import StoreBatch
from agentstore.schemas.traces import SpanIn
from agentstore.tracing import Exporter, attributes_of

T = TypeVar("T")
CACHE_BYTES = 256 * 1024 * 1024
PUT_ATTEMPTS = 3
# The packs of other puts in flight one value's chunks may lie in (the contract allows 32).
BORROWED_PACKS = 8
# Manifests (a chunked value's chunks) remembered, so a value sent again is not cut again.
MANIFESTS = 4096


def _digest(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _cut(data: bytes) -> list[tuple[str, int]]:
    """A value's chunks (digest, size) by content: 16 KiB on average (chunks of 4-64 KiB),
    larger for values past 8 MiB so one has at most ~2,000 (the contract's MAX_CHUNKS is 4,096)."""
    avg = max(16 * 1024, 1 << (-(-len(data) // 512) - 1).bit_length())
    avg = min(avg, 4 * 1024 * 1024)
    return [(_digest(c.data), c.length) for c in FastCDC(avg).cut_buf(data)]


class _Blobs:
    """The large values of one saver: digests known stored (no upload needed; whole values,
    packs and chunks), a bounded cache of bytes read (no download needed; whole values and
    chunks), and the manifests of chunked values seen."""

    def __init__(self, cache_bytes: int) -> None:
        self.known: set[str] = set()
        self.cache: OrderedDict[str, bytes] = OrderedDict()
        self.cached = 0
        self.limit = cache_bytes
        self.manifests: OrderedDict[str, list[tuple[str, int]]] = OrderedDict()
        # Chunks in the pack of a put not yet answered (chunk digest -> its pack, offset):
        # LangGraph stores a step's writes in the background while the next step runs, so
        # puts overlap; a later one places these chunks in that pack, not in its own again,
        # and is sent once that pack is uploaded.
        self.sending: dict[str, tuple[_Flight, int]] = {}

    def remember(self, digest: str, data: bytes) -> None:
        if digest in self.cache or len(data) > self.limit:
            return
        self.cache[digest] = data
        self.cached += len(data)
        while self.cached > self.limit:
            _, dropped = self.cache.popitem(last=False)
            self.cached -= len(dropped)

    def recall(self, digest: str) -> bytes | None:
        data = self.cache.get(digest)
        if data is not None:
            self.cache.move_to_end(digest)
        return data

    def manifest(self, whole: str, data: bytes) -> list[tuple[str, int]]:
        chunks = self.manifests.get(whole)
        if chunks is None:
            chunks = _cut(data)
        self.note_manifest(whole, chunks)
        return chunks

    def note_manifest(self, whole: str, chunks: list[tuple[str, int]]) -> None:
        self.manifests[whole] = chunks
        self.manifests.move_to_end(whole)
        while len(self.manifests) > MANIFESTS:
            self.manifests.popitem(last=False)


class _Flight:
    """The pack of a put not yet answered: its chunks, and when it is in object storage."""

    def __init__(self, pack: Pack, data: bytes) -> None:
        self.pack = pack
        self.data = data
        # Set once the pack is uploaded or its put has ended: borrowers send theirs then (a
        # pack that never got there comes back to them as `missing`, and they upload it).
        self.uploaded = asyncio.Event()

    def settle(self) -> None:
        self.uploaded.set()


class _Outgoing:
    """What one put sends besides its message: objects to upload (digest -> bytes: whole
    values, its own pack of new chunks, and the packs of puts in flight whose chunks it
    names), and the chunks it names."""

    def __init__(self) -> None:
        self.uploads: dict[str, bytes] = {}
        self.chunks: set[str] = set()
        self.pieces: list[memoryview] = []  # the pack's chunks, joined once all are in
        self.packed = 0
        self.in_pack: dict[str, int] = {}  # chunk digest -> offset in the pack
        self.flight: _Flight | None = None  # its own pack, once built
        self.borrowed: dict[str, _Flight] = {}  # pack digest -> another put's pack

    def add_to_pack(self, digest: str, data: memoryview) -> int:
        if digest not in self.in_pack:
            self.in_pack[digest] = self.packed
            self.pieces.append(memoryview(data))
            self.packed += len(data)
        return self.in_pack[digest]


class AgentstoreSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer kept by agentstore (sync and async; the sync methods must be
    called from a thread other than the client's event loop, as LangGraph's own async savers
    require).

    `chunk_from`: values this large or larger are chunked by content (at least the contract's
    `CHUNKED_MIN`, 64 KiB); None stores every large value whole, as v1.8 did.

    `ttl`: as LangGraph's store takes it, `{"default_ttl": minutes, "refresh_on_read": bool}`:
    a thread this saver writes expires `default_ttl` minutes after its last checkpoint (or
    its last read, with `refresh_on_read`, the default), and the artifacts service deletes
    it with its values. None: threads are kept until deleted or pruned."""

    def __init__(
        self, client: AgentClient, *, serde: SerializerProtocol | None = None, cache_bytes: int = CACHE_BYTES,
        chunk_from: int | None = CHUNKED_MIN, ttl: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(serde=serde)
        self.ttl_minutes, self.refresh_on_read = _ttl(ttl)
        if chunk_from is not None and chunk_from < CHUNKED_MIN:
            raise ValueError(
                f"chunk_from is {chunk_from}: the contract chunks values of {CHUNKED_MIN} bytes or more"
            )
        self.client = client
        self.chunk_from = chunk_from
        self.blobs = _Blobs(cache_bytes)
        self.loop = _running_loop()

    # -- values --------------------------------------------------------------------
    def _values(self, typed: Sequence[tuple[str, bytes]], out: _Outgoing) -> list[Value]:
        """Serialized values as the wire carries them: inline while small and while the
        request's inline budget lasts (largest go by digest first), else by digest, chunked
        from `CHUNKED_MIN` on (the chunks the service lacks in one pack for the request)."""
        inline = sorted(
            (i for i, (_, d) in enumerate(typed) if len(d) <= INLINE_MAX), key=lambda i: len(typed[i][1])
        )
        budget, by_digest = INLINE_BUDGET, set(range(len(typed))) - set(inline)
        for i in inline:
            budget -= len(typed[i][1])
            if budget < 0:
                by_digest.add(i)
        values: list[Value] = []
        chunked: list[tuple[int, list[tuple[str, int, str | None, int]]]] = []
        for i, (kind, data) in enumerate(typed):
            if i not in by_digest:
                values.append(Value(type=kind, data=data))
                continue
            digest = _digest(data)
            values.append(Value(type=kind, digest=digest, size=len(data)))
            if self.chunk_from is None or len(data) < self.chunk_from:
                if digest not in self.blobs.known:
                    out.uploads[digest] = data
                continue
            placed: list[tuple[str, int, str | None, int]] = []  # digest, size, pack (None: own), offset
            offset = 0
            view = memoryview(data)
            lent: set[str] = set()  # the packs of other puts this value's chunks lie in
            for d, size in self.blobs.manifest(digest, data):
                out.chunks.add(d)
                flight = self.blobs.sending.get(d)
                if flight is not None and flight[0].pack.digest not in lent and len(lent) >= BORROWED_PACKS:
                    flight = None  # a value spread over many puts' packs: the rest in its own
                if d in self.blobs.known:
                    placed.append((d, size, "", 0))
                elif flight is not None:
                    lent.add(flight[0].pack.digest)
                    out.borrowed[flight[0].pack.digest] = flight[0]
                    out.uploads[flight[0].pack.digest] = flight[0].data
                    placed.append((d, size, flight[0].pack.digest, flight[1]))
                else:
                    placed.append((d, size, None, out.add_to_pack(d, view[offset : offset + size])))
                offset += size
            chunked.append((i, placed))
        own: Pack | None = None
        if out.pieces:
            # A value new from end to end is its own pack: no copy, no second hash.
            fresh = [i for i, placed in chunked if all(p[2] is None for p in placed)]
            if len(fresh) == 1 and len(typed[fresh[0]][1]) == out.packed:
                joined, pack_digest = typed[fresh[0]][1], values[fresh[0]].digest
            else:
                joined = b"".join(out.pieces)
                pack_digest = _digest(joined)
            assert pack_digest is not None
            own = Pack(digest=pack_digest, size=len(joined))
            out.uploads[own.digest] = joined
            out.flight = _Flight(own, joined)
            for d, at in out.in_pack.items():
                self.blobs.sending.setdefault(d, (out.flight, at))
        for i, placed in chunked:
            packs: dict[str, tuple[int, Pack]] = {}  # digest -> its index in the value's packs, it
            chunks = []
            for d, size, where, at in placed:
                if where == "":
                    chunks.append(Chunk(digest=d, size=size))
                    continue
                pack = own if where is None else out.borrowed[where].pack
                assert pack is not None
                index, _ = packs.setdefault(pack.digest, (len(packs), pack))
                chunks.append(Chunk(digest=d, size=size, pack=index, offset=at))
            v = values[i]
            values[i] = Value(
                type=v.type, digest=v.digest, size=v.size, chunks=chunks, packs=[p for _, p in packs.values()]
            )
        return values

    async def _store(self, endpoint: contract.Endpoint[Any, CheckpointStored],
                     build: Callable[[_Outgoing], Any]) -> None:  # fmt: skip
        """Send a put; upload what the service lacks and send it again (built again when the
        service lacks chunks this process believed it held)."""
        out = _Outgoing()
        request = build(out)
        try:
            for _ in range(2 * PUT_ATTEMPTS):
                if out.borrowed:  # they never raise: a pack not uploaded comes back as missing
                    await asyncio.gather(*(f.uploaded.wait() for f in out.borrowed.values()))
                reply = await self.client.call(endpoint, request)
                if reply.stored:
                    self.blobs.known.update(out.uploads)
                    self.blobs.known.update(out.chunks)
                    return
                if reply.missing_chunks:
                    self.blobs.known.difference_update(reply.missing_chunks)
                    self._land(out)
                    out = _Outgoing()
                    request = build(out)
                    continue
                missing = {u.digest: u.url for u in reply.missing}
                self.blobs.known.difference_update(missing)
                await asyncio.gather(
                    *(asyncio.to_thread(http_put, url, self._bytes_for(d, out.uploads), "application/octet-stream")
                      for d, url in missing.items())
                )  # fmt: skip
                if out.flight is not None:
                    out.flight.settle()
            raise Unavailable(
                f"{endpoint.subject}: values were uploaded {PUT_ATTEMPTS} times and still missing"
            )
        finally:
            self._land(out)

    def _land(self, out: _Outgoing) -> None:
        """A put's own pack is no longer in flight: later puts place its chunks anew (known,
        or in their own pack)."""
        if out.flight is None:
            return
        out.flight.settle()
        for d in out.in_pack:
            if self.blobs.sending.get(d, (None,))[0] is out.flight:
                del self.blobs.sending[d]

    def _bytes_for(self, digest: str, uploads: dict[str, bytes]) -> bytes:
        data = uploads.get(digest) or self.blobs.recall(digest)
        if data is None:
            raise Unavailable(f"the service lacks value {digest} and this process no longer holds it")
        return data

    async def _read(self, values: Sequence[Value]) -> list[bytes]:
        async def one(v: Value) -> bytes:
            if v.data is not None:
                return v.data
            if v.chunks:
                return await self._assemble(v)
            assert v.digest is not None and v.url is not None
            data = self.blobs.recall(v.digest)
            if data is None:
                data = await asyncio.to_thread(http_get, v.url)
                if _digest(data) != v.digest:
                    raise Unavailable(f"value {v.digest} read back with other content; not using it")
                self.blobs.remember(v.digest, data)
            self.blobs.known.add(v.digest)
            return data

        return list(await asyncio.gather(*(one(v) for v in values)))

    async def _assemble(self, v: Value) -> bytes:
        """A chunked value from its chunks: those not cached read with one ranged GET per pack
        (from its first needed chunk to its last), each checked against its digest."""
        have = {c.digest: b for c in v.chunks if (b := self.blobs.recall(c.digest)) is not None}
        wanted: dict[int, list[Chunk]] = {}
        for c in v.chunks:
            if c.digest not in have:
                assert c.pack is not None  # replies place every chunk
                wanted.setdefault(c.pack, []).append(c)

        async def fetch(pack: Pack, chunks: list[Chunk]) -> None:
            assert pack.url is not None
            start, end = min(c.offset for c in chunks), max(c.offset + c.size for c in chunks)
            span = await asyncio.to_thread(http_get, pack.url, start, end)
            for c in chunks:
                data = span[c.offset - start : c.offset - start + c.size]
                if _digest(data) != c.digest:
                    raise Unavailable(f"chunk {c.digest} read back with other content; not using it")
                have[c.digest] = data
                self.blobs.remember(c.digest, data)

        await asyncio.gather(*(fetch(v.packs[i], chunks) for i, chunks in wanted.items()))
        data = b"".join(have[c.digest] for c in v.chunks)
        if v.digest is not None and _digest(data) != v.digest:
            raise Unavailable(f"value {v.digest} assembled from its chunks with other content; not using it")
        self.blobs.known.update(c.digest for c in v.chunks)
        if v.digest is not None:
            self.blobs.note_manifest(v.digest, [(c.digest, c.size) for c in v.chunks])
        return data

    async def _deferred(self, thread: str, ns: str, checkpoint_id: str, refs: list[ValueRef]) -> list[Value]:
        """Values a reply deferred (past its size budget), asked for until all are in."""
        got: list[Value] = []
        while len(got) < len(refs):
            reply = await self.client.call(
                contract.CHECKPOINT_VALUES,
                GetValues(
                    thread_id=thread, checkpoint_ns=ns, checkpoint_id=checkpoint_id, refs=refs[len(got) :]
                ),
            )
            taken = list(itertools.takewhile(lambda v: not v.deferred, reply.values))
            if not taken:
                raise Unavailable(f"a value of checkpoint {checkpoint_id} is larger than a reply can carry")
            got += taken
        return got

    async def _resolve(self, rec: CheckpointRecord) -> CheckpointRecord:
        """Fetch the values a reply deferred (past its size budget)."""
        refs = [ValueRef(channel=c.channel, version=c.version) for c in rec.values if c.value.deferred]
        refs += [ValueRef(task_id=w.task_id, idx=w.idx) for w in rec.writes if w.value.deferred]
        got = await self._deferred(rec.thread_id, rec.checkpoint_ns, rec.checkpoint_id, refs)
        it = iter(got)
        values = [ChannelValue(channel=c.channel, version=c.version, value=next(it)) if c.value.deferred else c
                  for c in rec.values]  # fmt: skip
        writes = [Write(task_id=w.task_id, idx=w.idx, channel=w.channel, task_path=w.task_path, value=next(it))
                  if w.value.deferred else w for w in rec.writes]  # fmt: skip
        return CheckpointRecord(
            thread_id=rec.thread_id, checkpoint_ns=rec.checkpoint_ns, checkpoint_id=rec.checkpoint_id,
            parent_id=rec.parent_id, checkpoint=rec.checkpoint, metadata=rec.metadata, values=values,
            writes=writes, created_at=rec.created_at,
        )  # fmt: skip

    async def _tuple(self, rec: CheckpointRecord) -> CheckpointTuple:
        if any(c.value.deferred for c in rec.values) or any(w.value.deferred for w in rec.writes):
            rec = await self._resolve(rec)
        raw = await self._read([rec.checkpoint, rec.metadata, *(c.value for c in rec.values),
                                *(w.value for w in rec.writes)])  # fmt: skip
        loads = self.serde.loads_typed
        checkpoint: Checkpoint = loads((rec.checkpoint.type, raw[0]))
        values = raw[2 : 2 + len(rec.values)]
        writes = raw[2 + len(rec.values) :]
        checkpoint = {
            **checkpoint,
            "channel_values": {
                c.channel: loads((c.value.type, data))
                for c, data in zip(rec.values, values, strict=True)
                if c.value.type != "empty"
            },
        }
        where = {"thread_id": rec.thread_id, "checkpoint_ns": rec.checkpoint_ns}
        return CheckpointTuple(
            config={"configurable": {**where, "checkpoint_id": rec.checkpoint_id}},
            checkpoint=checkpoint,
            metadata=loads((rec.metadata.type, raw[1])),
            parent_config={"configurable": {**where, "checkpoint_id": rec.parent_id}} if rec.parent_id else None,
            pending_writes=[(w.task_id, w.channel, loads((w.value.type, data)))
                            for w, data in zip(rec.writes, writes, strict=True)],
        )  # fmt: skip

    # -- the async interface ---------------------------------------------------------
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        return await self._get(
            str(conf["thread_id"]), conf.get("checkpoint_ns", ""), get_checkpoint_id(config)
        )

    async def _get(self, thread: str, ns: str, checkpoint_id: str | None) -> CheckpointTuple | None:
        """A checkpoint read whole. One whose objects vanish while read was deleted after the
        reply: asked for again, it is gone (None) or found again (a copy kept its content)."""
        for attempt in range(3):
            reply = await self.client.call(
                contract.CHECKPOINT_GET,
                GetCheckpoint(thread_id=thread, checkpoint_ns=ns, checkpoint_id=checkpoint_id,
                              refresh_ttl=self.refresh_on_read),
            )  # fmt: skip
            if reply.checkpoint is None:
                return None
            try:
                return await self._tuple(reply.checkpoint)
            except ObjectGone:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        conf = (config or {}).get("configurable", {})
        left = limit
        cursor: str | None = None
        while left is None or left > 0:
            page = await self.client.call(
                contract.CHECKPOINT_LIST,
                ListCheckpoints(
                    thread_id=str(conf["thread_id"]) if conf.get("thread_id") is not None else None,
                    checkpoint_ns=conf.get("checkpoint_ns"),
                    checkpoint_id=conf.get("checkpoint_id"),
                    filter_json=_json(filter) if filter else None,
                    before=get_checkpoint_id(before) if before else None,
                    limit=min(left, MAX_LIST) if left is not None else MAX_LIST,
                    cursor=cursor,
                    refresh_ttl=self.refresh_on_read and conf.get("thread_id") is not None,
                ),
            )
            for rec in page.items:
                found: CheckpointTuple | None
                try:
                    found = await self._tuple(rec)
                except ObjectGone:  # deleted since the page was read: as it is now, if at all
                    found = await self._get(rec.thread_id, rec.checkpoint_ns, rec.checkpoint_id)
                if found is not None:
                    yield found
            if left is not None:
                left -= len(page.items)
            cursor = page.next_cursor
            if cursor is None:
                return

    async def aput(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:  # fmt: skip
        conf = config["configurable"]
        c = checkpoint.copy()
        values: dict[str, Any] = c.pop("channel_values")  # type: ignore[misc]
        dumps = self.serde.dumps_typed
        channels = list(new_versions)
        typed = [dumps(c), *(dumps(values[k]) if k in values else ("empty", b"") for k in channels)]
        meta = get_checkpoint_metadata(config, metadata)
        meta_type, meta_data = dumps(meta)

        def build(out: _Outgoing) -> PutCheckpoint:
            head, *blobs = self._values(typed, out)
            return PutCheckpoint(
                thread_id=str(conf["thread_id"]), checkpoint_ns=conf.get("checkpoint_ns", ""),
                checkpoint_id=checkpoint["id"], parent_id=conf.get("checkpoint_id"), checkpoint=head,
                metadata=Value(type=meta_type, data=meta_data), metadata_json=_json(meta),
                versions={k: str(v) for k, v in checkpoint["channel_versions"].items()},
                values=[ChannelValue(channel=k, version=str(new_versions[k]), value=v)
                        for k, v in zip(channels, blobs, strict=True)],
                ttl_minutes=self.ttl_minutes,
            )  # fmt: skip

        await self._store(contract.CHECKPOINT_PUT, build)
        return {"configurable": {"thread_id": conf["thread_id"], "checkpoint_ns": conf.get("checkpoint_ns", ""),
                                 "checkpoint_id": checkpoint["id"]}}  # fmt: skip

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        conf = config["configurable"]
        typed = [self.serde.dumps_typed(v) for _, v in writes]

        def build(out: _Outgoing) -> PutWrites:
            values = self._values(typed, out)
            return PutWrites(
                thread_id=str(conf["thread_id"]), checkpoint_ns=conf.get("checkpoint_ns", ""),
                checkpoint_id=conf["checkpoint_id"],
                writes=[Write(task_id=task_id, idx=WRITES_IDX_MAP.get(ch, i), channel=ch, task_path=task_path,
                              value=v) for i, ((ch, _), v) in enumerate(zip(writes, values, strict=True))],
            )  # fmt: skip

        await self._store(contract.CHECKPOINT_WRITES, build)

    async def adelete_thread(self, thread_id: str) -> None:
        await self.client.call(contract.CHECKPOINT_DELETE, DeleteCheckpoints(thread_ids=[str(thread_id)]))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        if run_ids:
            await self.client.call(
                contract.CHECKPOINT_DELETE, DeleteCheckpoints(run_ids=[str(r) for r in run_ids])
            )

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self.client.call(
            contract.CHECKPOINT_COPY,
            CopyThread(source_thread_id=str(source_thread_id), target_thread_id=str(target_thread_id)),
        )

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"Unknown prune strategy: {strategy!r} (keep_latest or delete)")
        if thread_ids:
            await self.client.call(
                contract.CHECKPOINT_PRUNE,
                PruneThreads(thread_ids=[str(t) for t in thread_ids], strategy=strategy),  # type: ignore[arg-type]
            )

    def get_next_version(self, current: str | None, channel: None) -> str:
        """LangGraph's own string versions (sortable; a random part tells forks apart)."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """LangGraph's `DeltaChannel` history in one request (the service walks the parent
        chain), not a `get_tuple` per ancestor."""
        if not channels:
            return {}
        conf = config["configurable"]
        thread, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        reply = await self.client.call(
            contract.CHECKPOINT_HISTORY,
            DeltaHistoryQuery(thread_id=thread, checkpoint_ns=ns, checkpoint_id=get_checkpoint_id(config),
                              channels=list(channels)),
        )  # fmt: skip
        out: dict[str, DeltaChannelHistory] = {}
        for h in reply.channels:
            writes = [w.write for w in h.writes]
            for checkpoint_id in dict.fromkeys(w.checkpoint_id for w in h.writes if w.write.value.deferred):
                late = [w for w in h.writes if w.checkpoint_id == checkpoint_id and w.write.value.deferred]
                got = iter(await self._deferred(thread, ns, checkpoint_id,
                                                [ValueRef(task_id=w.write.task_id, idx=w.write.idx) for w in late]))  # fmt: skip
                writes = [Write(task_id=w.task_id, idx=w.idx, channel=w.channel, task_path=w.task_path, value=next(got))
                          if w.value.deferred and hw.checkpoint_id == checkpoint_id else w
                          for w, hw in zip(writes, h.writes, strict=True)]  # fmt: skip
            seed = h.seed
            if seed is not None and seed.deferred:
                assert h.seed_checkpoint_id is not None
                (seed,) = await self._deferred(thread, ns, h.seed_checkpoint_id,
                                               [ValueRef(channel=h.channel, version=h.seed_version)])  # fmt: skip
            raw = await self._read([w.value for w in writes] + ([seed] if seed is not None else []))
            loads = self.serde.loads_typed
            entry: DeltaChannelHistory = {
                "writes": [
                    (w.task_id, w.channel, loads((w.value.type, data)))
                    for w, data in zip(writes, raw, strict=False)
                ]
            }
            if seed is not None:
                entry["seed"] = loads((seed.type, raw[-1]))
            out[h.channel] = entry
        return out

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self._sync(self.aget_delta_channel_history(config=config, channels=channels))

    # -- the sync interface: the async one, on the client's loop ----------------------
    def _sync(self, coro: Coroutine[Any, Any, T]) -> T:
        return _on_loop(self.loop, coro, type(self).__name__)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._sync(self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        async def collect() -> list[CheckpointTuple]:
            return [t async for t in self.alist(config, filter=filter, before=before, limit=limit)]

        return iter(self._sync(collect()))

    def put(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:  # fmt: skip
        return self._sync(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        self._sync(self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._sync(self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._sync(self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._sync(self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._sync(self.aprune(thread_ids, strategy=strategy))


def _on_loop(loop: asyncio.AbstractEventLoop | None, coro: Coroutine[Any, Any, T], who: str) -> T:
    """Run `coro` on the client's loop from another thread (the sync interface)."""
    if loop is None or loop.is_closed():
        coro.close()
        raise RuntimeError(
            f"{who}'s sync methods run on the client's event loop: create it inside that loop "
            "(or use the async methods: ainvoke, aget_state, ...)"
        )
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise asyncio.InvalidStateError(
            f"Synchronous calls to {who} are only allowed from a thread other than the client's "
            "event loop; from that loop, use the async interface (ainvoke, aget_state, ...)"
        )
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


def _ttl(ttl: dict[str, Any] | None) -> tuple[float | None, bool]:
    """A saver's `ttl` config: (minutes or None, refresh on read)."""
    if ttl is None:
        return None, False
    unknown = set(ttl) - {"default_ttl", "refresh_on_read", "sweep_interval_minutes"}
    if unknown:
        raise ValueError(f"ttl takes default_ttl and refresh_on_read, not {sorted(unknown)}")
    if "sweep_interval_minutes" in ttl:
        raise ValueError(
            "ttl: the artifacts service sweeps expired threads; set its period with "
            "CHECKPOINT_TTL_SWEEP_SECONDS in the service's environment, not sweep_interval_minutes"
        )
    minutes = ttl.get("default_ttl")
    if minutes is None:
        return None, False
    if (
        isinstance(minutes, bool)
        or not isinstance(minutes, int | float)
        or not 0 < minutes <= MAX_TTL_MINUTES
    ):
        raise ValueError(f"ttl default_ttl is {minutes!r}: minutes above 0, at most ten years")
    return float(minutes), bool(ttl.get("refresh_on_read", True))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _json(value: Any) -> str:
    """Metadata as JSON text for the service to filter on (what JSON cannot hold, as text;
    NUL dropped: PostgreSQL's jsonb refuses it)."""
    return json.dumps(value, default=str, ensure_ascii=False).replace("\\u0000", "")


class _Embedder:
    """The caller's embeddings, called so that no number of concurrent graph runs can
    deadlock: a sync call (a sync node, from a worker thread) embeds in that thread; an async
    call runs sync code on this module's own threads, never on the loop's default executor,
    which a graph's sync nodes fill while they wait on the loop (LangGraph's own
    `aembed_documents` of a plain function goes there). Native async embeddings are awaited."""

    def __init__(self, embeddings: Embeddings) -> None:
        self.embeddings = embeddings
        if isinstance(embeddings, EmbeddingsLambda):
            self._native_async = getattr(embeddings, "func", None) is None
        else:  # LangChain's default async methods are the sync ones on the default executor
            self._native_async = type(embeddings).aembed_documents is not Embeddings.aembed_documents

    @property
    def sync_capable(self) -> bool:
        return not (isinstance(self.embeddings, EmbeddingsLambda) and self._native_async)

    def embed(self, queries: list[str], texts: list[str]) -> tuple[list[list[float]], list[list[float]]]:
        q = [list(self.embeddings.embed_query(t)) for t in queries]
        d = [list(v) for v in self.embeddings.embed_documents(texts)] if texts else []
        return q, d

    async def aembed(
        self, queries: list[str], texts: list[str]
    ) -> tuple[list[list[float]], list[list[float]]]:
        if not queries and not texts:
            return [], []
        if self._native_async:
            q = list(await asyncio.gather(*(self.embeddings.aembed_query(t) for t in queries)))
            d = await self.embeddings.aembed_documents(texts) if texts else []
            return [list(v) for v in q], [list(v) for v in d]
        return await asyncio.get_running_loop().run_in_executor(_embed_threads(), self.embed, queries, texts)


_EMBED_THREADS: ThreadPoolExecutor | None = None


def _embed_threads() -> ThreadPoolExecutor:
    global _EMBED_THREADS
    if _EMBED_THREADS is None:
        _EMBED_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="agentstore-embed")
    return _EMBED_THREADS


SearchMode = Literal["semantic", "hybrid"]
_Vectors = tuple[list[list[float]], list[list[float]]]  # the queries', the put texts'


class AgentstoreStore(BaseStore):
    """LangGraph's long-term memory store (`BaseStore`), kept by agentstore per agent.

    With `index` (LangGraph's `IndexConfig`: `embed`, `dims`, `fields`), the texts at the
    fields are embedded here by the caller's `embed` on put, and a search's query too; the
    service keeps the vectors in PostgreSQL with a pgvector HNSW index (approximate nearest
    neighbours, fleet scale). `search_mode="hybrid"` fuses that ranking with full-text search
    (reciprocal rank fusion); without `index`, a search's `query` is a full-text search.
    TTL in minutes, refreshed on read unless `ttl_config={"refresh_on_read": False}`.
    Sync methods (sync graph nodes) embed in the calling thread: any number of concurrent
    runs is safe.
    """

    supports_ttl: bool = True

    def __init__(self, client: AgentClient, *, index: IndexConfig | None = None,
                 ttl: TTLConfig | None = None, search_mode: SearchMode = "semantic",
                 exact_search: bool = False) -> None:  # fmt: skip
        if search_mode not in ("semantic", "hybrid"):
            raise ValueError(f"search_mode must be 'semantic' or 'hybrid', not {search_mode!r}")
        self.client = client
        self.ttl_config = ttl
        self.index_config = index
        self.search_mode = search_mode
        # An exact scan instead of the HNSW index: slower, for checks of recall and parity.
        self.exact_search = exact_search
        self.embeddings: Embeddings | None = ensure_embeddings(index.get("embed")) if index else None
        self._embedder = _Embedder(self.embeddings) if self.embeddings is not None else None
        fields = (index or {}).get("fields") or ["$"]
        self.fields = [(p, tokenize_path(p) if p != "$" else p) for p in fields]
        self.loop = _running_loop()

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        embedder = self._embedder
        if embedder is None or not embedder.sync_capable:
            return _on_loop(self.loop, self.abatch(ops), type(self).__name__)
        # Embedded here, in the calling thread, then sent from the loop: the loop never has
        # to find a free thread for this caller's embeddings.
        chunks = [ops[i : i + MAX_STORE_OPS] for i in range(0, len(ops), MAX_STORE_OPS)]
        planned = []
        for chunk in chunks:
            plan = self._plan(chunk)
            planned.append((chunk, plan, embedder.embed(plan.queries, plan.texts)))
        return _on_loop(self.loop, self._send(planned), type(self).__name__)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        planned = []
        for start in range(0, len(ops), MAX_STORE_OPS):
            chunk = ops[start : start + MAX_STORE_OPS]
            plan = self._plan(chunk)
            vectors = await self._embedder.aembed(plan.queries, plan.texts) if self._embedder else ([], [])
            planned.append((chunk, plan, vectors))
        return await self._send(planned)

    async def _send(self, planned: list[tuple[list[Op], _Plan, _Vectors]]) -> list[Result]:
        results: list[Result] = []
        for chunk, plan, vectors in planned:
            reply = await self.client.call(
                contract.STORE_BATCH, StoreBatch(ops=plan.wire(chunk, vectors, self))
            )
            results += [_result(op, r) for op, r in zip(chunk, reply.results, strict=True)]
        return results

    def _plan(self, ops: Sequence[Op]) -> _Plan:
        plan = _Plan()
        if self.embeddings is None:
            return plan
        for op in ops:
            if isinstance(op, SearchOp) and op.query:
                plan.add_query(op.query)
        for i, op in enumerate(ops):
            if isinstance(op, PutOp) and op.value is not None and op.index is not False:
                paths = self.fields if op.index is None else [(p, tokenize_path(p)) for p in op.index]
                for path, tokens in paths:
                    found = get_text_at_path(op.value, tokens)
                    plan.texts += [t for t in found]
                    plan.owners += [(i, f"{path}.{n}" if len(found) > 1 else path) for n in range(len(found))]
        return plan

    async def areindex(self, namespace_prefix: tuple[str, ...] = (), *, page: int = 200,
                       progress: Callable[[int, int], None] | None = None) -> int:  # fmt: skip
        """Re-embed every item under `namespace_prefix` with this store's `index` (after its
        `fields` or embedding model changed): new vectors replace the old, item by item, only
        where the item was not written meanwhile (that write embedded it already). Values,
        order and TTLs are left. `progress(done, seen)` after each page; returns how many
        items were re-embedded."""
        if self._embedder is None:
            raise ValueError("reindex needs the store's `index` (the embed function and fields to use)")
        done = seen = 0
        offset = 0
        while True:
            reply = await self.client.call(contract.STORE_BATCH, StoreBatch(ops=[
                st.SearchItems(namespace_prefix=list(namespace_prefix), limit=page, offset=offset)]))  # fmt: skip
            items = reply.results[0].items or []
            if not items:
                return done
            offset += len(items)
            seen += len(items)
            puts = [PutOp(tuple(i.namespace), i.key, i.value) for i in items]
            plan = self._plan(puts)
            _, vectors = await self._embedder.aembed([], plan.texts)
            by_op = plan.vectors_by_op(vectors)
            ops: list[st.StoreOp] = [
                st.PutVectors(
                    namespace=i.namespace, key=i.key, updated_at=i.updated_at, vectors=by_op.get(n, [])
                )
                for n, i in enumerate(items)
            ]
            answer = await self.client.call(contract.STORE_BATCH, StoreBatch(ops=ops))  # type: ignore[arg-type]
            done += sum(1 for r in answer.results if r.updated)
            if progress is not None:
                progress(done, seen)

    def reindex(self, namespace_prefix: tuple[str, ...] = (), *, page: int = 200,
                progress: Callable[[int, int], None] | None = None) -> int:  # fmt: skip
        return _on_loop(self.loop, self.areindex(namespace_prefix, page=page, progress=progress),
                        type(self).__name__)  # fmt: skip


class _Plan:
    """What a chunk of ops needs embedded: the queries (first) and the put texts, each text
    with the op and field path it belongs to."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        self.texts: list[str] = []
        self.owners: list[tuple[int, str]] = []  # each text's (op index, field path)

    def add_query(self, query: str) -> None:
        if query not in self.queries:
            self.queries.append(query)

    def vectors_by_op(self, vectors: list[list[float]]) -> dict[int, list[st.PathVector]]:
        by_op: dict[int, list[st.PathVector]] = {}
        for (i, path), vector in zip(self.owners, vectors, strict=True):
            by_op.setdefault(i, []).append(st.PathVector(path=path, vector=[float(x) for x in vector]))
        return by_op

    def wire(self, ops: Sequence[Op], vectors: _Vectors, store: AgentstoreStore,
             ) -> list[st.Op]:  # fmt: skip
        by_query = {q: [float(x) for x in v] for q, v in zip(self.queries, vectors[0], strict=True)}
        by_op = self.vectors_by_op(vectors[1])
        hybrid = store.search_mode == "hybrid"
        wire: list[st.Op] = []
        for i, op in enumerate(ops):
            if isinstance(op, GetOp):
                wire.append(
                    st.GetItem(namespace=list(op.namespace), key=str(op.key), refresh_ttl=op.refresh_ttl)
                )
            elif isinstance(op, SearchOp):
                query = by_query.get(op.query) if op.query else None
                # With an index: by meaning (and by text too when hybrid); without: by text.
                text = op.query if op.query and (query is None or hybrid) else None
                wire.append(st.SearchItems(
                    namespace_prefix=list(op.namespace_prefix),
                    filter_json=json.dumps(op.filter) if op.filter else None,
                    limit=op.limit, offset=op.offset, vector=query, text=text, refresh_ttl=op.refresh_ttl,
                    exact=store.exact_search,
                ))  # fmt: skip
            elif isinstance(op, PutOp):
                wire.append(st.PutItem(
                    namespace=list(op.namespace), key=str(op.key),
                    value=dict(op.value) if op.value is not None else None,
                    ttl_minutes=op.ttl if op.value is not None else None, vectors=by_op.get(i, []),
                ))  # fmt: skip
            elif isinstance(op, ListNamespacesOp):
                wire.append(st.ListNamespaces(
                    match_conditions=[st.MatchCondition(match_type=c.match_type, path=list(c.path))
                                      for c in op.match_conditions or ()],
                    max_depth=op.max_depth, limit=op.limit, offset=op.offset,
                ))  # fmt: skip
            else:
                raise ValueError(f"Unknown operation type: {type(op)}")
        return wire


def _stored(item: st.StoreItem, search: bool) -> Item:
    fields = dict(
        namespace=tuple(item.namespace), key=item.key, value=item.value,
        created_at=datetime.fromisoformat(item.created_at), updated_at=datetime.fromisoformat(item.updated_at),
    )  # fmt: skip
    return SearchItem(**fields, score=item.score) if search else Item(**fields)  # type: ignore[arg-type]


def _result(op: Op, r: st.OpResult) -> Result:
    if isinstance(op, GetOp):
        return _stored(r.item, False) if r.item is not None else None
    if isinstance(op, SearchOp):
        return [_stored(i, True) for i in r.items or []]  # type: ignore[misc]
    if isinstance(op, ListNamespacesOp):
        return [tuple(ns) for ns in r.namespaces or []]
    return None


class AgentstoreTracer(BaseCallbackHandler):
    """LangChain's and LangGraph's runs as agentstore traces (CONTRACT v1.12), from the
    callbacks every runnable already makes: pass it in the run's config.

        tracer = AgentstoreTracer(client)
        await graph.ainvoke(inputs, {"configurable": {"thread_id": "t-1"}, "callbacks": [tracer]})

    The graph run is the root span; each node, chain, chat model, tool and retriever under it
    a child, with the model and token usage of model calls (`usage_metadata`, or the
    provider's `token_usage`), the thread and checkpoint namespace LangGraph puts in the
    run's metadata, and the error of a failed run. Make it in async code (it publishes on
    that event loop, whatever thread a sync callback runs on); `await tracer.flush()` waits
    for what it has published.
    """

    raise_error = False  # a tracing problem never fails the user's run
    run_inline = True  # called on the run's event loop, in order, not from an executor thread

    def __init__(self, client: AgentClient) -> None:
        self._exporter = Exporter(client)
        self._open: dict[Any, dict[str, Any]] = {}

    async def flush(self) -> None:
        await self._exporter.flush()

    # -- opening ---------------------------------------------------------------------------
    def _start(self, run_id: Any, parent_run_id: Any, name: str, kind: str, metadata: Mapping[str, Any] | None,
               **attributes: Any) -> None:  # fmt: skip
        parent = self._open.get(parent_run_id) if parent_run_id is not None else None
        meta = dict(metadata or {})
        self._open[run_id] = {
            "trace_id": parent["trace_id"] if parent else run_id.hex,
            "parent_span_id": _span_of(parent_run_id) if parent_run_id is not None else None,
            "name": name[:256] or kind,
            "kind": "client" if kind in ("llm", "chat_model", "retriever") else "internal",
            "start": datetime.now(UTC),
            "thread_id": meta.get("thread_id") or (parent or {}).get("thread_id"),
            "attributes": {"langchain": {"run_type": kind, **attributes,
                                         **{k: meta[k] for k in _META_KEPT if k in meta}}},
            "model": meta.get("ls_model_name"),
        }  # fmt: skip

    def on_chain_start(self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: Any,
                       parent_run_id: Any = None, metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:  # fmt: skip
        name = kwargs.get("name") or (serialized or {}).get("name") or "chain"
        self._start(run_id, parent_run_id, str(name), "chain", metadata, inputs=attributes_of(inputs))

    def on_chat_model_start(self, serialized: dict[str, Any] | None, messages: Any, *, run_id: Any,
                            parent_run_id: Any = None, metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:  # fmt: skip
        name = kwargs.get("name") or (serialized or {}).get("name") or "chat model"
        self._start(run_id, parent_run_id, str(name), "chat_model", metadata, inputs=attributes_of(messages))

    def on_llm_start(self, serialized: dict[str, Any] | None, prompts: Any, *, run_id: Any,
                     parent_run_id: Any = None, metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:  # fmt: skip
        name = kwargs.get("name") or (serialized or {}).get("name") or "llm"
        self._start(run_id, parent_run_id, str(name), "llm", metadata, inputs=attributes_of(prompts))

    def on_tool_start(self, serialized: dict[str, Any] | None, input_str: str, *, run_id: Any,
                      parent_run_id: Any = None, metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:  # fmt: skip
        name = kwargs.get("name") or (serialized or {}).get("name") or "tool"
        self._start(run_id, parent_run_id, f"tool {name}", "tool", metadata, inputs=attributes_of(input_str))

    def on_retriever_start(self, serialized: dict[str, Any] | None, query: str, *, run_id: Any,
                           parent_run_id: Any = None, metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:  # fmt: skip
        name = kwargs.get("name") or (serialized or {}).get("name") or "retriever"
        self._start(run_id, parent_run_id, str(name), "retriever", metadata, inputs=attributes_of(query))

    # -- closing ---------------------------------------------------------------------------
    def _end(self, run_id: Any, *, outputs: Any = None, error: BaseException | None = None,
             model: str | None = None, tokens: tuple[int | None, int | None] = (None, None)) -> None:  # fmt: skip
        opened = self._open.pop(run_id, None)
        if opened is None:
            return
        attributes = opened["attributes"]
        if outputs is not None:
            attributes["langchain"]["outputs"] = attributes_of(outputs)
        start = opened["start"]
        self._exporter.send(SpanIn(
            trace_id=opened["trace_id"], span_id=_span_of(run_id), parent_span_id=opened["parent_span_id"],
            name=opened["name"], kind=opened["kind"], start=start, end=max(datetime.now(UTC), start),
            status="error" if error is not None else "ok",
            status_message=f"{type(error).__name__}: {error}"[:4096] if error is not None else None,
            model=(model or opened["model"] or None), input_tokens=tokens[0], output_tokens=tokens[1],
            thread_id=str(opened["thread_id"])[:256] if opened["thread_id"] else None,
            attributes=attributes_of(attributes),
        ))  # fmt: skip

    def on_chain_end(self, outputs: Any, *, run_id: Any, **kwargs: Any) -> None:
        self._end(run_id, outputs=outputs)

    def on_chain_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
        self._end(run_id, error=error)

    def on_tool_end(self, output: Any, *, run_id: Any, **kwargs: Any) -> None:
        self._end(run_id, outputs=output)

    def on_tool_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
        self._end(run_id, error=error)

    def on_retriever_end(self, documents: Any, *, run_id: Any, **kwargs: Any) -> None:
        self._end(run_id, outputs=documents)

    def on_retriever_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
        self._end(run_id, error=error)

    def on_llm_end(self, response: Any, *, run_id: Any, **kwargs: Any) -> None:
        model, tokens = _llm_usage(response)
        generations = [[g.text for g in gs] for gs in getattr(response, "generations", [])]
        self._end(run_id, outputs=generations, model=model, tokens=tokens)

    def on_llm_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
        self._end(run_id, error=error)


def _span_of(run_id: Any) -> str:
    """A run's span id: the random half of its UUID (LangChain's are UUIDv7, whose first half
    is the time: runs started in one millisecond share it)."""
    return str(run_id.hex[16:])


# LangGraph's metadata of a run worth keeping on its span.
_META_KEPT = ("langgraph_node", "langgraph_step", "checkpoint_ns", "ls_provider", "ls_model_name")


def _llm_usage(response: Any) -> tuple[str | None, tuple[int | None, int | None]]:
    """A model call's model and (input, output) tokens: the message's `usage_metadata`, else
    the provider's `llm_output.token_usage`."""
    output = getattr(response, "llm_output", None) or {}
    model = output.get("model_name") or output.get("model")
    for generations in getattr(response, "generations", []):
        for generation in generations:
            message = getattr(generation, "message", None)
            usage = getattr(message, "usage_metadata", None)
            meta = getattr(message, "response_metadata", None) or {}
            model = model or meta.get("model_name") or meta.get("model")
            if usage:
                return model, (usage.get("input_tokens"), usage.get("output_tokens"))
    usage = output.get("token_usage") or output.get("usage") or {}
    return model, (usage.get("prompt_tokens", usage.get("input_tokens")),
                   usage.get("completion_tokens", usage.get("output_tokens")))  # fmt: skip
