"""The artifacts service's wire messages, and the object key rules."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated
from urllib.parse import unquote

import msgspec

from agentstore.schemas.common import (
    DEFAULT_LIMIT,
    After,
    AgentId,
    AgentIds,
    EventId,
    Limit,
    Reply,
    Strict,
)

MAX_KEY_BYTES = 1024
DEFAULT_BUCKET = "screenshots"
UNASSIGNED = "_"  # the task segment of a key when the artifact has no task
BucketName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$(?!\n)")]
ContentType = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,128}$(?!\n)")
]
FileName = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Cursor = Annotated[str, msgspec.Meta(max_length=512)]


def check_name(name: str) -> str:
    """A file name safe as the last segment of an object key, or ValueError saying why."""
    decoded = name
    for _ in range(3):  # %252e%252e → %2e%2e → ..
        decoded = unquote(decoded)
    for candidate in (name, decoded):
        if "/" in candidate or "\\" in candidate:
            raise ValueError(f"name {name[:80]!r} may not contain '/' or '\\\\' (also %-encoded)")
        if candidate == "." or ".." in candidate:
            raise ValueError(f"name {name[:80]!r} may not hold '..' (path traversal)")
        if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in candidate):
            raise ValueError(f"name {name[:80]!r} holds control characters")
    if len(name.encode()) > 255:
        raise ValueError("name is over 255 bytes")
    return name


def object_key(agent: str, task_id: str | None, artifact_id: str, name: str) -> str:
    """`{agent}/{task or _}/{id}-{name}`, at most 1024 bytes."""
    key = f"{agent}/{task_id or UNASSIGNED}/{artifact_id}-{check_name(name)}"
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"object key would be {len(key.encode())} bytes; the limit is 1024")
    return key


_KEY = re.compile(r"^(?P<agent>[A-Za-z0-9][A-Za-z0-9_-]{0,63})/(?P<task>[^/]+)/(?P<rest>[^/]+)$(?!\n)")


def check_key(agent: str, key: str) -> re.Match[str]:
    """An object key the agent may register: under its own prefix, well formed."""
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError("object key is over 1024 bytes")
    match = _KEY.match(key)
    if match is None:
        raise ValueError(f"object key {key[:120]!r} is not '{{agent}}/{{task}}/{{id}}-{{name}}'")
    if match["agent"] != agent:
        raise ValueError(f"object key {key[:120]!r} is outside agent {agent}'s prefix {agent}/")
    check_name(match["task"])
    check_name(match["rest"])
    return match


class UploadIn(Strict):
    """Body of `agents.{agent}.uploads`: register an object uploaded with a presigned PUT."""

    id: EventId
    object_key: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_KEY_BYTES)]
    name: FileName | None = None
    content_type: ContentType | None = None
    task_id: EventId | None = None
    bucket: BucketName | None = None


class PresignRequest(Strict):
    name: FileName
    content_type: ContentType
    task_id: EventId | None = None
    bucket: BucketName | None = None
    expires_seconds: Annotated[int, msgspec.Meta(ge=60, le=604_800)] = 3600


class FilesQuery(Strict):
    agent_ids: AgentIds | None = None
    task_id: EventId | None = None
    bucket: BucketName | None = None
    content_type: ContentType | None = None
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    after: After | None = None


class ScreenshotsQuery(FilesQuery):
    """`query.screenshots` (v1.3): files with a presigned GET each (`url`,
    `url_expires_at`): a gallery in one round trip. Frontends and agents (their own)
    only: evaluators read metadata, as seed 003's access matrix has it."""

    url_seconds: Annotated[int, msgspec.Meta(ge=1, le=604_800)] = 3600


class DeleteFiles(Strict):
    """`files.delete` (v1.3, seed 003's "delete prefix"): every object under
    `{agent_id}/{prefix}` in every bucket, and its metadata; recorded in the agent's
    audit trail (`agents.{agent}.events`, type `files_deleted`)."""

    agent_id: AgentId
    prefix: Annotated[str, msgspec.Meta(max_length=512, pattern=r"^(?!.*\.\.)[A-Za-z0-9._/-]*$(?!\n)")] = ""


class FileUrlQuery(Strict):
    file_id: Annotated[str, msgspec.Meta(min_length=3, max_length=200)]
    expires_seconds: Annotated[int, msgspec.Meta(ge=1, le=604_800)] = 3600


# -- replies -------------------------------------------------------------------


class FileItem(Reply):
    """A file's metadata row (`binary_file_metadata`)."""

    file_id: str
    bucket: str
    object_key: str
    agent_id: str
    name: str
    content_type: str
    size: int
    source: str
    created_at: str
    task_id: str | None = None
    sha256: str | None = None
    etag: str | None = None
    url: str | None = None  # with `urls: true`
    url_expires_at: str | None = None


class FilesDeleted(Reply):
    agent_id: str
    prefix: str
    files: int  # metadata rows removed
    objects: int  # objects removed (with or without metadata)


class FileUrl(Reply):
    url: str
    expires_at: str


class Presigned(Reply):
    upload_url: str
    object_key: str
    bucket: str
    expires_at: str
