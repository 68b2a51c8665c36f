"""The one S3 adapter (MinIO via miniopy-async). Nothing else imports it."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from miniopy_async.api import Minio
from miniopy_async.error import S3Error

from agentstore.errors import StoreMisconfigured, StoreRejected, StoreUnavailable

# The one table from S3's errors to ours, by the error code every S3 server answers with
# (AWS's list, which MinIO, SeaweedFS and the rest follow); an unlisted code by its HTTP
# status: 4xx the request, 5xx the server.
# "This request is wrong", not "try later": the object, its name or its size.
_PERMANENT = frozenset({
    "NoSuchKey", "InvalidObjectName", "EntityTooLarge", "EntityTooSmall", "KeyTooLongError",
    "InvalidArgument", "InvalidDigest", "BadDigest", "MetadataTooLarge", "InvalidRange",
})  # fmt: skip
# Faults of the deployment, not of the data: retried, and shown in readiness.
_DEPLOYMENT = frozenset({
    "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidBucketName",
    "AllAccessDisabled", "AccountProblem", "RequestTimeTooSkewed", "InvalidToken", "ExpiredToken",
})  # fmt: skip
# Busy, restarting or overloaded: the same request succeeds later.
_TRANSIENT = frozenset({
    "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "OperationAborted",
    "XMinioServerNotInitialized", "XMinioStorageFull",
})  # fmt: skip
# What the client raises: S3's answers, its own checks of a name or a size (ValueError), and
# a lost or refused connection.
_DRIVER_ERRORS = (S3Error, ValueError, aiohttp.ClientError, OSError, TimeoutError)


def convert(exc: BaseException, endpoint: str) -> Exception:
    """S3Error by code (then HTTP status), a lost connection as unavailable."""
    if isinstance(exc, S3Error):
        code, status = exc.code or "", getattr(exc.response, "status", 0) or 0
        if code in _DEPLOYMENT:
            return StoreMisconfigured(
                f"S3 at {endpoint} refused: {code}: {exc.message}; the deployment is wrong "
                "(a missing bucket, a key or a policy): fix it and everything waiting is stored"
            )
        if code in _PERMANENT or (code not in _TRANSIENT and 400 <= status < 500):
            return StoreRejected(f"S3 refused: {code}: {exc.message}")
    if isinstance(exc, ValueError):  # the client's own checks of a name or a size
        return StoreRejected(f"S3 cannot take it: {exc}")
    return StoreUnavailable(
        f"S3 at {endpoint} is unavailable ({type(exc).__name__}: {exc}); is `make up` running?"
    )


@contextlib.contextmanager
def driver_errors(endpoint: str) -> Iterator[None]:
    """The one place the S3 client's errors become ours (see `convert`)."""
    try:
        yield
    except _DRIVER_ERRORS as exc:
        raise convert(exc, endpoint) from exc


# MinIO's region unless told otherwise, and what S3 servers without regions answer.
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str
    content_type: str | None
    modified: datetime | None


class ObjectStore:
    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        secure: bool,
        public: tuple[str, bool] | None = None,
        region: str | None = None,
    ) -> None:
        """`public`: the (host[:port], https) presigned URLs are signed for, when clients
        reach S3 elsewhere than `endpoint` (a cluster's ingress); `region`: the buckets'."""
        self.endpoint = endpoint
        self._client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region
        )
        # Presigning is computed here, not asked of S3; with a region given, this client never
        # calls the public address (the pod may not reach it).
        self._presigner = (
            self._client
            if public is None
            else Minio(
                public[0],
                access_key=access_key,
                secret_key=secret_key,
                secure=public[1],
                region=region or DEFAULT_REGION,
            )
        )

    async def __aenter__(self) -> ObjectStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.close_session()  # type: ignore[no-untyped-call]
        if self._presigner is not self._client:
            await self._presigner.close_session()  # type: ignore[no-untyped-call]

    async def ping(self) -> None:
        try:
            await self._client.list_buckets()
        except Exception as exc:
            raise convert(exc, self.endpoint) from exc

    async def ensure_bucket(self, bucket: str) -> None:
        with driver_errors(self.endpoint):
            try:
                if not await self._client.bucket_exists(bucket):
                    await self._client.make_bucket(bucket)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    async def put(self, bucket: str, key: str, data: bytes, content_type: str) -> str:
        """Store an object; returns its ETag. Putting the same key again overwrites it."""
        with driver_errors(self.endpoint):
            result = await self._client.put_object(
                bucket, key, io.BytesIO(data), len(data), content_type=content_type
            )
        return str(result.etag)

    async def get(self, bucket: str, key: str) -> bytes:
        with driver_errors(self.endpoint):
            response = await self._client.get_object(bucket, key)
            try:
                data: bytes = await response.read()
            finally:
                response.close()
        return data

    async def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        with driver_errors(self.endpoint):
            try:
                info = await self._client.stat_object(bucket, key)
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchObject"):
                    return None
                raise
        return ObjectInfo(
            bucket,
            key,
            int(info.size or 0),
            str(info.etag or ""),
            info.content_type,
            info.last_modified,
        )

    async def list(self, bucket: str, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        with driver_errors(self.endpoint):
            async for obj in self._client.list_objects(bucket, prefix=prefix, recursive=True):
                yield ObjectInfo(
                    bucket,
                    str(obj.object_name),
                    int(obj.size or 0),
                    str(obj.etag or ""),
                    None,
                    obj.last_modified,
                )

    async def remove(self, bucket: str, key: str) -> None:
        with driver_errors(self.endpoint):
            await self._client.remove_object(bucket, key)

    async def presign_put(self, bucket: str, key: str, expires: timedelta) -> str:
        return str(await self._presign("put", bucket, key, expires))

    async def presign_get(self, bucket: str, key: str, expires: timedelta) -> str:
        return str(await self._presign("get", bucket, key, expires))

    async def _presign(self, method: str, bucket: str, key: str, expires: timedelta) -> Any:
        with driver_errors(self.endpoint):
            if method == "put":
                return await self._presigner.presigned_put_object(bucket, key, expires=expires)
            return await self._presigner.presigned_get_object(bucket, key, expires=expires)
