"""Shared field types, limits and checks of the wire contract."""

from __future__ import annotations

import base64
import binascii
import functools
import math
import typing
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec

from agentstore.errors import BadRequest, InvalidMessage

# `$(?!\n)`, not `$`: msgspec matches with Python's `re.search`, where `$` also matches
# before a trailing newline ("agent\n" passed); ECMA regexes (the JSON Schemas) have no `\Z`.
AGENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$(?!\n)"
EVENT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$(?!\n)"

# Caps the docs state (docs/CONTRACT.md, "Limits").
MAX_MESSAGE_CHARS = 64 * 1024
MAX_TEXT_CHARS = 256 * 1024
MAX_NAME_CHARS = 256
MAX_TAGS = 64
MAX_NESTING = 32
# Keys of one free-form map: a document of 10k top-level fields is an index and a
# query planner's bad day, and never what an agent meant (v1.3).
MAX_MAP_KEYS = 1000
MAX_QUERY_AGENTS = 1000
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

AgentId = Annotated[str, msgspec.Meta(pattern=AGENT_ID_PATTERN)]
EventId = Annotated[str, msgspec.Meta(pattern=EVENT_ID_PATTERN)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_CHARS)]
UtcTime = Annotated[datetime, msgspec.Meta(tz=True)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)]
AgentIds = Annotated[list[AgentId], msgspec.Meta(min_length=1, max_length=MAX_QUERY_AGENTS)]
FreeMap = dict[str, Any]

Level = Literal["debug", "info", "warning", "error", "critical"]
LEVEL_NUMBERS: dict[str, int] = {
    "debug": 10,
    "info": 20,
    "warning": 30,
    "error": 40,
    "critical": 50,
}


class Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Base of every wire message: unknown fields are an error, never ignored."""


class Reply(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Base of every reply: the declared wire shape of an answer.

    Replies are built with ``msgspec.convert`` from rows or documents, so a
    column the table gains never leaks into the public API; fields never set
    are omitted. Unknown fields are allowed when a client decodes a reply, so
    a newer server's additions never break an older client.
    """


Item = TypeVar("Item")


class Page(Reply, Generic[Item]):
    """Every list reply: a page of items and the cursor of the next one (null at the end)."""

    items: list[Item]
    next_cursor: str | None


class StoredNotice(Reply):
    """`stored.{agent}.{kind}` (v1.14): the service committed and acknowledged `count` new
    messages of that agent and kind, up to stream position `seq`. A hint, at most once (core
    NATS): a subscriber reads the items with the kind's query (`after: {stream, seq}` reads
    up to it); one missed only delays what the next says."""

    stream: str
    seq: int
    count: int


class After(Strict):
    """Read your writes: the PubAck position the caller wants the answer to include."""

    stream: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$(?!\n)")]
    seq: Annotated[int, msgspec.Meta(ge=0)]


T = TypeVar("T", bound=msgspec.Struct)


# BSON's and PostgreSQL's widest integer: a JSON integer past it has no store to go to.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_tree(value: Any, where: str = "$", depth: int = 0) -> None:
    """The contract's value rules (docs/CONTRACT.md, "Values"): refuse what no store can
    hold or what would inject into a document store, naming the path.

    Integers outside int64, non-finite numbers, NUL or unpaired surrogates in strings and
    keys, keys that are empty, start with ``$`` or hold ``.``, nesting deeper than
    MAX_NESTING and maps of more than MAX_MAP_KEYS keys all raise ValueError
    (``$.fields.v: integer out of int64 range``).
    """
    if depth > MAX_NESTING:
        raise ValueError(f"{where}: nesting deeper than {MAX_NESTING} levels")
    if isinstance(value, dict):
        if len(value) > MAX_MAP_KEYS:
            raise ValueError(f"{where}: {len(value):,} keys in the map; at most {MAX_MAP_KEYS:,}")
        for key, item in value.items():
            if not isinstance(key, str) or not key or key.startswith("$") or "." in key or "\x00" in key:
                raise ValueError(
                    f"{where}: key {str(key)[:64]!r} may not be empty, start with '$' or hold '.' or NUL"
                )
            _check_text(key, where)
            check_tree(item, f"{where}.{key[:64]}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_tree(item, f"{where}[{index}]", depth + 1)
    elif isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where}: NUL byte in string")
        _check_text(value, where)
    elif isinstance(value, msgspec.Struct):
        if getattr(value, "schema_checked", False):
            return  # its schema's own constraints already keep to these rules (see Chunk)
        for name in value.__struct_fields__:
            field = getattr(value, name)
            if field is not None:
                check_tree(field, f"{where}.{name}", depth + 1)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"{where}: integer out of int64 range")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: non-finite number")


def _check_text(text: str, where: str) -> None:
    """UTF-8 can carry no unpaired surrogate (JSON escapes like \\ud800 decoded by a lenient
    parser, a Python str built by hand); ASCII, the common case, is checked for free."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where}: unpaired surrogate in text {text[:32]!r}") from None


def nest_keys(flat: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys (OpenTelemetry's `gen_ai.usage.input_tokens`) as nested maps, the shape
    a document store queries by path (`gen_ai.usage.input_tokens` again); a leading `$`
    becomes `_$`. A key that is also a prefix of another keeps its value under `_`."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = [("_" + p if p.startswith("$") else p) or "_" for p in key.replace("\x00", "").split(".")]
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {} if child is None else {"_": child}
                node[part] = child
            node = child
        leaf = parts[-1]
        value = nest_keys(value) if isinstance(value, dict) else value
        if isinstance(node.get(leaf), dict) and not isinstance(value, dict):
            node[leaf]["_"] = value
        else:
            node[leaf] = value
    return out


def _accepted(kind: type[msgspec.Struct], error: str) -> str:
    """For an enum refused at a top-level field, the values it accepts (an error that says
    exactly what to send instead)."""
    if "Invalid enum value" not in error or "$." not in error:
        return ""
    field = error.rsplit("$.", 1)[-1].rstrip("`")
    values = _literals(typing.get_type_hints(kind, include_extras=True).get(field))
    return f"; {field} accepts {', '.join(values)}" if values else ""


def _literals(tp: Any) -> list[str]:
    if typing.get_origin(tp) is typing.Literal:
        return [a for a in typing.get_args(tp) if isinstance(a, str)]
    return [v for arg in typing.get_args(tp) for v in _literals(arg)]


def decode_message(data: bytes, kind: type[T]) -> T:
    """Decode and validate an ingest body; any problem raises InvalidMessage with the reason."""
    try:
        message = msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidMessage(f"invalid {kind.__name__}: {exc}{_accepted(kind, str(exc))}") from None
    except msgspec.DecodeError as exc:
        raise InvalidMessage(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        # The decoder's own stack limit (~1,000 levels), far past ours: a poison message,
        # never a reason to stop consuming.
        raise InvalidMessage(
            f"nesting deeper than {MAX_NESTING} levels (the body nests past the decoder's limit)"
        ) from None
    try:
        check_fields(message, data)
    except ValueError as exc:
        raise InvalidMessage(str(exc)) from None
    return message


def check_fields(message: msgspec.Struct, data: bytes) -> None:
    """check_tree, on the hot path: typed strings need no walk.

    JSON can only carry NUL as the escape \\u0000 (and msgspec refuses unpaired
    surrogates), so a body without that escape holds no NUL anywhere; then only
    maps, lists and numbers need walking (for keys, depth and range).
    """
    if b"\\u0000" in data:
        names = message.__struct_fields__
    else:
        names = _container_fields(type(message))
        # What JSON decoded holds no NUL and no unpaired surrogate (msgspec refuses them): a
        # walk without paths answers for the valid, and only a refusal walks again to name it.
        if all(_json_tree_ok(getattr(message, name), 0) for name in names):
            return
    for name in names:
        value = getattr(message, name)
        if value is not None:
            check_tree(value, f"$.{name}")


def _json_tree_ok(value: Any, depth: int) -> bool:
    """check_tree's rules for a value decoded from JSON without a NUL escape (no text to
    check), by exact types: False for anything check_tree might refuse (or a type it walks
    otherwise, a Struct), so that check_tree then decides and names the path."""
    kind = type(value)
    if kind is str or kind is bool or kind is float or value is None:
        return depth <= MAX_NESTING  # JSON carries no non-finite number (msgspec refuses 1e400)
    if depth > MAX_NESTING:
        return False
    if kind is dict:
        if len(value) > MAX_MAP_KEYS:
            return False
        for key, item in value.items():
            if not key or key[0] == "$" or "." in key:
                return False
            if type(item) is not str and not _json_tree_ok(item, depth + 1):
                return False
        return depth < MAX_NESTING or not value  # a map's items sit one level deeper
    if kind is list:
        return all(
            (type(item) is str and depth < MAX_NESTING) or _json_tree_ok(item, depth + 1) for item in value
        )
    if kind is int:
        return bool(INT64_MIN <= value <= INT64_MAX)
    return False


@functools.cache
def _container_fields(kind: type[msgspec.Struct]) -> tuple[str, ...]:
    """The fields of `kind` that can hold a map, a list or a number (the only ones with keys,
    depth or a range to check)."""

    def container(t: msgspec.inspect.Type) -> bool:
        if isinstance(t, msgspec.inspect.UnionType):
            return any(container(u) for u in t.types)
        if isinstance(t, msgspec.inspect.Metadata):
            return container(t.type)
        scalar = (msgspec.inspect.StrType, msgspec.inspect.BoolType, msgspec.inspect.DateTimeType,
                  msgspec.inspect.NoneType, msgspec.inspect.LiteralType)  # fmt: skip
        return not isinstance(t, scalar)

    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    return tuple(f.name for f in info.fields if container(f.type))


def decode_request(data: bytes, kind: type[T]) -> T:
    """Decode and validate a request body; any problem raises BadRequest (400)."""
    try:
        request = msgspec.json.decode(data or b"{}", type=kind)
        check_tree(msgspec.structs.asdict(request))
    except (msgspec.ValidationError, ValueError) as exc:
        raise BadRequest(f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"request is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest(f"invalid request: nesting deeper than {MAX_NESTING} levels") from None
    return request


def iso(ts: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, the contract's one timestamp format."""
    # isoformat truncates to milliseconds like the contract; it is ~3x cheaper than strftime,
    # which matters on hot reply paths (every row's timestamps). Rows from PostgreSQL and
    # MongoDB are already in UTC: no conversion then (it showed in claims' profile).
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    return ts.isoformat(timespec="milliseconds")[:-6] + "Z"


def to_ms(ts: datetime) -> datetime:
    """Truncate to milliseconds (BSON and the wire carry no more)."""
    ts = ts.astimezone(UTC)
    return ts.replace(microsecond=ts.microsecond - ts.microsecond % 1000)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)


def ms_of(ts: datetime) -> int:
    """Exact milliseconds since the epoch (no float rounding)."""
    return (ts - EPOCH) // MILLISECOND


def from_ms(ms: int) -> datetime:
    return EPOCH + ms * MILLISECOND


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(list(parts))).decode().rstrip("=")


def keyset_page(
    rows: Sequence[Item], limit: int, key: Callable[[Item], Sequence[Any]]
) -> tuple[Sequence[Item], str | None]:
    """A page of rows fetched with `limit + 1`: the first `limit`, and the cursor after the
    last of them (its `key`, the ORDER BY's columns) when the extra row shows more follow."""
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, encode_cursor(*key(page[-1]))


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """Opaque cursors are base64url JSON arrays; anything else is a 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = msgspec.json.decode(raw, type=list[Any])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise BadRequest("malformed cursor; pass back next_cursor exactly as received") from None
    if len(parts) != arity:
        raise BadRequest("malformed cursor; pass back next_cursor exactly as received")
    return parts
