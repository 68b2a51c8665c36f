"""What the identity service issued: one record per run-time identity in a JetStream key-value
bucket (replicated with the streams; every replica of the service shares it), and the
revocations under their own keys (`revoked.<kind>.<id>`).

A login is answered from memory (each replica watches the revocations: no round trip on the
connect path) and recorded after the answer, with the connection it opened, so a revocation
can cut exactly those. A login admitted while a revocation spreads is recorded within the
second a revocation waits before kicking again (identity/service.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from agentstore.contract import IDENTITIES_BUCKET
from agentstore.errors import StoreUnavailable
from agentstore.schemas.identity import IdentitiesQuery, IdentityItem, IdentityKind
from agentstore_server.bus.handle import BusHandle

# Connections kept per identity: a revocation cuts these (older ones are long gone).
KEPT_CONNECTIONS = 16
# Compare-and-set rounds before a busy key is given up on (replicas racing on one identity).
CAS_ROUNDS = 20


class Record(msgspec.Struct, kw_only=True):
    kind: IdentityKind
    id: str
    issued_at: datetime
    last_login: datetime
    logins: int = 0
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    # (server id, client id) of its latest connections: what `KICK` takes.
    connections: list[tuple[str, int]] = msgspec.field(default_factory=list)

    @classmethod
    def first(cls, kind: IdentityKind, ident: str, now: datetime) -> Record:
        """The record of an identity the registry had none of (its first login, or a revoke
        of an id never issued)."""
        return cls(kind=kind, id=ident, issued_at=now, last_login=now)

    def item(self) -> IdentityItem:
        return IdentityItem(kind=self.kind, id=self.id, issued_at=self.issued_at, last_login=self.last_login,
                            logins=self.logins, revoked_at=self.revoked_at,
                            revoked_by=self.revoked_by)  # fmt: skip


class Registry:
    def __init__(self, bus: BusHandle, replicas: int = 1) -> None:
        self.bus = bus
        self.replicas = replicas
        self._kv: KeyValue | None = None
        self._revoked: set[str] = set()  # "<kind>.<id>", from the bucket's revoked.> keys
        self.primed = asyncio.Event()  # every revocation made before this replica started is known

    async def watch_revocations(self) -> None:
        """Keep the revoked set current (a background loop of the service)."""
        watcher = await (await self.kv()).watch("revoked.>")
        async for entry in watcher:
            if entry is None:  # the revocations already made have all been delivered
                self.primed.set()
            elif entry.operation in (None, "PUT"):
                self._revoked.add(entry.key.removeprefix("revoked."))
            else:  # deleted: reinstated
                self._revoked.discard(entry.key.removeprefix("revoked."))

    def is_revoked(self, kind: IdentityKind, ident: str) -> bool:
        return f"{kind}.{ident}" in self._revoked

    async def kv(self) -> KeyValue:
        if self._kv is None:
            # Logins can arrive while the service starts, before its own connection is bound.
            await asyncio.wait_for(self.bus.bound.wait(), timeout=10)
            js = self.bus.nc.jetstream()
            try:
                self._kv = await js.key_value(IDENTITIES_BUCKET)
            except BucketNotFoundError:
                self._kv = await js.create_key_value(
                    bucket=IDENTITIES_BUCKET, history=1, replicas=self.replicas,
                    description="agentstore run-time identities: issued, last login, revoked",
                )  # fmt: skip
        return self._kv

    async def _change(self, kind: IdentityKind, ident: str, change: Any) -> Record:
        """Read, `change(record or None) -> record`, write back only if nobody wrote between."""
        kv = await self.kv()
        key = f"{kind}.{ident}"
        for _ in range(CAS_ROUNDS):
            try:
                entry = await kv.get(key)
                current = msgspec.json.decode(entry.value or b"", type=Record)
                revision: int | None = entry.revision
            except KeyNotFoundError:
                current, revision = None, None
            record: Record = change(current)
            data = msgspec.json.encode(record)
            try:
                if revision is None:
                    await kv.create(key, data)
                else:
                    await kv.update(key, data, last=revision)
                return record
            except KeyWrongLastSequenceError:
                continue  # another replica wrote first: read again
        raise StoreUnavailable(f"identity {key} changed {CAS_ROUNDS} times while being written; retry")

    async def login(self, kind: IdentityKind, ident: str, server: str, cid: int) -> Record:
        """Record an admitted login and its connection."""
        now = datetime.now(UTC)

        def change(record: Record | None) -> Record:
            record = record or Record.first(kind, ident, now)
            record.logins += 1
            record.last_login = now
            record.connections = [*record.connections, (server, cid)][-KEPT_CONNECTIONS:]
            return record

        return await self._change(kind, ident, change)

    async def revoke(self, kind: IdentityKind, ident: str, by: str | None = None) -> Record:
        """Refuse the identity's logins from now on (also one never issued yet): every replica
        sees the revoked key within milliseconds; the record says when, and its connections."""
        now = datetime.now(UTC)
        self._revoked.add(f"{kind}.{ident}")
        await (await self.kv()).put(f"revoked.{kind}.{ident}", now.isoformat().encode())

        def change(record: Record | None) -> Record:
            record = record or Record.first(kind, ident, now)
            if record.revoked_at is None:  # a second revoke keeps the first's when and who
                record.revoked_at, record.revoked_by = now, by
            return record

        return await self._change(kind, ident, change)

    async def unrevoke(self, kind: IdentityKind, ident: str) -> datetime | None:
        """Admit the identity's logins again (every replica drops it from its revoked set as
        the key's delete reaches its watch); when it had been revoked, or None if it was not."""
        kv = await self.kv()
        try:
            entry = await kv.get(f"revoked.{kind}.{ident}")
        except KeyNotFoundError:
            return None
        since = datetime.fromisoformat((entry.value or b"").decode()) if entry.value else None
        await kv.delete(f"revoked.{kind}.{ident}")
        self._revoked.discard(f"{kind}.{ident}")

        def change(record: Record | None) -> Record:
            record = record or Record.first(kind, ident, datetime.now(UTC))
            record.revoked_at = record.revoked_by = None
            return record

        await self._change(kind, ident, change)
        return since

    async def list(self, q: IdentitiesQuery) -> list[IdentityItem]:
        kv = await self.kv()
        try:
            keys = await kv.keys()
        except NoKeysError:
            return []
        items = []
        for key in sorted(keys):
            if key.startswith("revoked.") or (q.kind is not None and not key.startswith(f"{q.kind}.")):
                continue
            try:
                record = msgspec.json.decode((await kv.get(key)).value or b"", type=Record)
            except KeyNotFoundError:
                continue
            if q.revoked is None or q.revoked == (record.revoked_at is not None):
                items.append(record.item())
            if len(items) >= q.limit:
                break
        return items
