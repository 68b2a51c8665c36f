"""Checkpoints (v1.8): an agent's graph state step by step, as LangGraph's checkpointers keep
it (a checkpoint per step, its channel values, the pending writes of its tasks), stored by the
artifacts service: rows in PostgreSQL, large values in object storage once per content.

Values travel as the framework serialized them (`type` and bytes: the agent's serializer, so
the service never unpickles or interprets them). A value up to `INLINE_MAX` bytes rides in the
message; a larger one is named by the SHA-256 of its bytes and put by the agent straight to
object storage with a presigned PUT the service hands out (`missing` in a put's reply), so a
6 MB channel that does not change is stored once, however many steps carry it. Replies carry
such a value as a presigned GET; the client checks the bytes against the digest.

A value of `CHUNKED_MIN` bytes or more (v1.10) is cut by content (FastCDC) into chunks named
by their SHA-256: a value that grows or is edited in place shares all but its changed chunks
with its previous version, so only those are stored again. The chunks new in one request go
up as one object (a pack, named by its own SHA-256, uploaded like any digest value); a chunk
is found by its pack and offset, read back with a ranged GET of the pack's presigned URL.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from agentstore.schemas.common import DEFAULT_LIMIT, AgentId, Limit, Reply, Strict

INLINE_MAX = 16 * 1024
# What one request or reply carries inline, at most (NATS's max_payload is 1 MiB, and JSON
# carries bytes as base64: 4/3 of their size).
INLINE_BUDGET = 512 * 1024
MAX_VALUES = 10_000
MAX_LIST = 100
# Values this large are chunked (v1.10); smaller ones are one object, as in v1.8.
CHUNKED_MIN = 64 * 1024
MAX_CHUNKS = 4096
MAX_CHUNK = 16 * 1024 * 1024  # FastCDC's largest
# The packs one value's chunks may lie in: a put whose value would spread wider is answered
# with all its chunks in `missing_chunks`, so the agent sends them again in one pack (a value
# edited over many steps is gathered back, and its reply stays small).
MAX_PACKS = 32
# What a chunk's entry weighs in a reply (its digest, size, pack and offset as JSON), counted
# against the inline budget so a reply of many chunked values still fits NATS's max_payload.
CHUNK_ENTRY_BYTES = 120

Cursor = Annotated[str, msgspec.Meta(max_length=512)]

ThreadId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Namespace = Annotated[str, msgspec.Meta(max_length=1024)]
CheckpointId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Digest = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$(?!\n)")]
Short = Annotated[str, msgspec.Meta(max_length=1024)]
# A thread's TTL: above zero, at most ten years (what PostgreSQL's intervals hold with room).
MAX_TTL_MINUTES = 10 * 366 * 24 * 60
TtlMinutes = Annotated[float, msgspec.Meta(gt=0, le=MAX_TTL_MINUTES)]


class Chunk(Strict, kw_only=True):
    """A piece of a chunked value: the SHA-256 of its bytes, its size, and where it lies:
    `pack`, an index into the value's `packs`, and `offset` in that object. In a put, a chunk
    the agent believes the service holds already has no pack (a `missing_chunks` reply says
    which it does not)."""

    # A value has thousands of these: its fields' constraints (a hex digest, bounded
    # integers) already keep to the contract's value rules, so `check_tree` need not walk it.
    schema_checked = True

    digest: Digest
    size: Annotated[int, msgspec.Meta(ge=1, le=MAX_CHUNK)]
    pack: Annotated[int, msgspec.Meta(ge=0, le=MAX_CHUNKS)] | None = None
    offset: Annotated[int, msgspec.Meta(ge=0, le=2**62)] = 0


class Pack(Strict, kw_only=True):
    """An object holding chunks end to end, named by the SHA-256 of its bytes; in replies
    with a presigned GET (`url`) that honours HTTP Range."""

    digest: Digest
    size: Annotated[int, msgspec.Meta(ge=1)]
    url: str | None = None


class Value(Strict, kw_only=True):
    """A serialized value: its serializer's `type` and either the bytes (`data`) or the
    SHA-256 of bytes held in object storage (`digest`, with `size`). In replies a digest
    value has a presigned GET (`url`); `deferred` means it did not fit the reply: ask
    `checkpoint.values` for it. A chunked value (v1.10) has `digest` and `size` of the whole
    and its `chunks` in order (their bytes concatenated are the value), found in `packs`."""

    type: Short
    data: bytes | None = None
    digest: Digest | None = None
    size: Annotated[int, msgspec.Meta(ge=0)] = 0
    url: str | None = None
    deferred: bool = False
    chunks: Annotated[list[Chunk], msgspec.Meta(max_length=MAX_CHUNKS)] = []
    packs: Annotated[list[Pack], msgspec.Meta(max_length=MAX_CHUNKS)] = []


class ChannelValue(Strict, kw_only=True):
    channel: Short
    version: Short
    value: Value


class Write(Strict, kw_only=True):
    """One pending write of a task: `idx` is its position, or LangGraph's negative index of
    a special channel (an error, an interrupt), which a later write replaces."""

    task_id: Short
    idx: int
    channel: Short
    value: Value
    task_path: Short = ""


class PutCheckpoint(Strict, kw_only=True):
    """Stores a checkpoint (replacing one of the same id) and the channel values new in it.

    `versions` is the checkpoint's channel → version map (which values it holds); `metadata`
    the serialized metadata and `metadata_json` the same as JSON text, what `list` filters on.
    """

    thread_id: ThreadId
    checkpoint_ns: Namespace = ""
    checkpoint_id: CheckpointId
    parent_id: CheckpointId | None = None
    checkpoint: Value
    metadata: Value
    metadata_json: Annotated[str, msgspec.Meta(max_length=256 * 1024)] = "{}"
    versions: dict[str, str] = {}
    # The thread expires this many minutes after this put (or after a read that refreshes
    # it): the service then deletes it. None leaves the thread's TTL as it was (none: never).
    ttl_minutes: TtlMinutes | None = None
    values: Annotated[list[ChannelValue], msgspec.Meta(max_length=MAX_VALUES)] = []


class Upload(Reply, kw_only=True):
    """A value the service does not hold: PUT its bytes to `url`, then send the request again."""

    digest: str
    url: str


class CheckpointStored(Reply, kw_only=True):
    """`stored` false: nothing was stored; upload `missing` and retry the same request, or,
    when `missing_chunks` names chunks sent without a pack that the service does not hold,
    send them in a pack."""

    stored: bool
    missing: list[Upload] = []
    missing_chunks: list[str] = []


class PutWrites(Strict, kw_only=True):
    thread_id: ThreadId
    checkpoint_ns: Namespace = ""
    checkpoint_id: CheckpointId
    writes: Annotated[list[Write], msgspec.Meta(max_length=MAX_VALUES)]


class GetCheckpoint(Strict, kw_only=True):
    """A thread's checkpoint: `checkpoint_id`'s, or the newest in the namespace."""

    thread_id: ThreadId
    checkpoint_ns: Namespace = ""
    checkpoint_id: CheckpointId | None = None
    refresh_ttl: bool = False  # restart the thread's TTL (if it has one) from now


class CheckpointRecord(Reply, kw_only=True):
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_id: str | None = None
    checkpoint: Value
    metadata: Value
    values: list[ChannelValue]
    writes: list[Write]
    created_at: str


class CheckpointFound(Reply, kw_only=True):
    checkpoint: CheckpointRecord | None = None


class ListCheckpoints(Strict, kw_only=True):
    """Checkpoints newest first: of a thread (or every thread of the agent), a namespace,
    one id; `filter_json` a JSON object whose every key must equal the metadata's; `before`
    an id; `cursor` the reply's `next_cursor`."""

    thread_id: ThreadId | None = None
    checkpoint_ns: Namespace | None = None
    checkpoint_id: CheckpointId | None = None
    filter_json: Annotated[str, msgspec.Meta(max_length=64 * 1024)] | None = None
    before: CheckpointId | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIST)] = MAX_LIST
    cursor: Short | None = None
    refresh_ttl: bool = False  # with a thread_id: restart its TTL from now (on the first page)


class CheckpointPage(Reply, kw_only=True):
    items: list[CheckpointRecord]
    next_cursor: str | None = None


class ValueRef(Strict, kw_only=True):
    """A deferred value: a channel's (`channel`, `version`) or a write's (`task_id`, `idx`)."""

    channel: Short | None = None
    version: Short | None = None
    task_id: Short | None = None
    idx: int | None = None


class GetValues(Strict, kw_only=True):
    thread_id: ThreadId
    checkpoint_ns: Namespace = ""
    checkpoint_id: CheckpointId
    refs: Annotated[list[ValueRef], msgspec.Meta(min_length=1, max_length=MAX_VALUES)]


class Values(Reply, kw_only=True):
    """The values asked for, in order, as many as fit (`deferred` ones: ask again)."""

    values: list[Value]


class DeleteCheckpoints(Strict, kw_only=True):
    """Every checkpoint and write of the threads, or of the runs (by metadata `run_id`)."""

    thread_ids: Annotated[list[ThreadId], msgspec.Meta(max_length=1000)] = []
    run_ids: Annotated[list[Short], msgspec.Meta(max_length=1000)] = []


class CopyThread(Strict, kw_only=True):
    source_thread_id: ThreadId
    target_thread_id: ThreadId


class PruneThreads(Strict, kw_only=True):
    """`keep_latest`: each namespace's newest checkpoint and what it needs (the ancestors
    back to a delta channel's snapshot, a subgraph's root checkpoint); `delete`: all."""

    thread_ids: Annotated[list[ThreadId], msgspec.Meta(max_length=1000)]
    strategy: Literal["keep_latest", "delete"] = "keep_latest"


class CheckpointsRemoved(Reply, kw_only=True):
    checkpoints: int
    objects: int = 0


class ThreadCopied(Reply, kw_only=True):
    checkpoints: int


# -- what evaluators and the console read (query.threads, query.checkpoints) -------------
class ThreadsQuery(Strict, kw_only=True):
    """`query.threads`: an agent's threads, most recently checkpointed first, or (`order`
    "bytes", v1.11) largest first with each thread's `bytes`."""

    agent_id: AgentId
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    order: Literal["updated", "bytes"] = "updated"


class ThreadItem(Reply, kw_only=True):
    thread_id: str
    checkpoints: int
    namespaces: int
    newest_checkpoint_id: str
    updated_at: str
    # With order "bytes": the sizes of its checkpoints, values and writes (a value shared
    # with other threads counts in each).
    bytes: int | None = None


class CheckpointsQuery(Strict, kw_only=True):
    """`query.checkpoints`: a thread's checkpoints in order (oldest first), each with what
    changed since its parent and a preview of the values new in it."""

    agent_id: AgentId
    thread_id: ThreadId
    checkpoint_ns: Namespace = ""
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None


class TaskWrite(Reply, kw_only=True):
    task_id: str
    channel: str
    preview: str


class CheckpointStep(Reply, kw_only=True):
    """One checkpoint as a person reads it: its step and source (LangGraph's metadata), its
    state (each channel's value), the channels whose version moved since its parent, with a
    preview of each new value (values
    kept by the agent's serializer: plain data shown as JSON, objects by class, large values
    by size), and the pending writes of its tasks."""

    checkpoint_id: str
    parent_id: str | None = None
    step: int | None = None
    source: str | None = None
    created_at: str
    changed: dict[str, str]
    # Every channel's value at this checkpoint (the state a person sees at this step).
    state: dict[str, str] = {}
    writes: list[TaskWrite]
    bytes: int


class CheckpointSteps(Reply, kw_only=True):
    """`query.checkpoints`'s page (v1.13: with `namespaces`, every namespace the thread has
    checkpoints in, "" the root's, so a page of one links to its subgraphs' pages)."""

    items: list[CheckpointStep]
    next_cursor: str | None = None
    namespaces: list[str] = []


class DeltaHistoryQuery(Strict, kw_only=True):
    """What a LangGraph `DeltaChannel` rebuilds its value from, walking the parent chain of a
    checkpoint (the newest without an id): per channel, the writes of the ancestors back to
    the nearest one holding a stored value (the seed), oldest first."""

    thread_id: ThreadId
    checkpoint_ns: Namespace = ""
    checkpoint_id: CheckpointId | None = None
    channels: Annotated[list[Short], msgspec.Meta(min_length=1, max_length=1000)]


class HistoryWrite(Reply, kw_only=True):
    checkpoint_id: str
    write: Write


class ChannelHistory(Reply, kw_only=True):
    channel: str
    writes: list[HistoryWrite]
    # The stored value the writes apply to (null: start empty), at `seed_checkpoint_id`.
    seed: Value | None = None
    seed_checkpoint_id: str | None = None
    seed_version: str | None = None


class DeltaHistory(Reply, kw_only=True):
    channels: list[ChannelHistory]
