"""Agent metric profiles (seed 002): the `agent_metrics` table as the single source of truth.

Every change is one SQL statement (or one transaction for bulk updates), so
concurrent results never lose an increment. Rules (also in the README):
- XP: a custody test awards `xp_awarded`, or by default `5 + round(score / 10)`
  when passed and 1 when failed; it adds to both `xp` and `custody_xp`.
- Level: `1 + xp // 100` (and `custody_level` from `custody_xp` alike).
- Difficulty ladder basic → standard → advanced → expert → master: every 3rd
  consecutive pass moves one up, every 2nd consecutive failure one down.
- `test_history` keeps the newest 50 results, `learning_patterns` 100 and
  `improvement_suggestions` 50.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from agentstore.errors import BadRequest, NotFound
from agentstore.schemas.common import decode_cursor, iso, keyset_page
from agentstore.schemas.metrics import (
    BulkUpdate,
    CreateOrUpdateProfile,
    CustodyQuery,
    CustodyTest,
    Learning,
    ProfileQuery,
    ProfileUpdate,
    ResetProfile,
    SummaryQuery,
    UpdateProfile,
    update_fields,
)
from agentstore.schemas.metrics import (
    Profiles as ProfilesReply,
)
from agentstore_server.bus.rpc import RequestContext
from agentstore_server.metrics.db import MetricsDb, to_wire

XP_PER_LEVEL = 100
HISTORY_CAPS = {"test_history": 50, "learning_patterns": 100, "improvement_suggestions": 50}


def default_xp(passed: bool, score: float) -> int:
    return 5 + round(score / 10) if passed else 1


class Profiles:
    def __init__(self, db: MetricsDb, caps: dict[str, int] | None = None) -> None:
        self.db = db
        # How many entries each history keeps (seed 002's max_*_size settings).
        self.caps = {**HISTORY_CAPS, **(caps or {})}

    async def query(self, ctx: RequestContext, q: ProfileQuery) -> dict[str, Any] | ProfilesReply:
        if ctx.agent is not None:
            ctx.check_agent(q.agent_id or ctx.agent)
            q = ProfileQuery(agent_id=ctx.agent)
        if q.agent_id is None:
            (after,) = decode_cursor(q.cursor, 1) if q.cursor else ("",)
            if not isinstance(after, str):
                raise BadRequest("malformed cursor; pass back next_cursor exactly as received")
            rows, cursor = keyset_page(
                await self.db.all_profiles(after, q.limit + 1), q.limit, lambda r: (r["agent_id"],)
            )
            page = {"items": [to_wire(r) for r in rows], "next_cursor": cursor}
            return msgspec.convert(page, ProfilesReply)
        row = await self.db.get_profile(q.agent_id)
        if row is None:
            raise NotFound(f"no metrics profile for agent {q.agent_id!r}")
        return to_wire(row)

    async def custody_test(self, ctx: RequestContext, q: CustodyTest) -> dict[str, Any]:
        when = q.timestamp or datetime.now(UTC)
        xp = q.xp_awarded if q.xp_awarded is not None else default_xp(q.passed, q.score)
        entry = {"passed": q.passed, "score": q.score, "duration": q.duration,
                 "timestamp": iso(when), "xp_awarded": xp}  # fmt: skip
        async with self.db.transaction() as tx:
            await tx.ensure_profile(q.agent_id)
            row = await tx.apply_custody_test(
                q.agent_id, q.passed, xp, when, entry, self.caps["test_history"], XP_PER_LEVEL
            )
        assert row is not None
        return to_wire(row)

    async def learning(self, ctx: RequestContext, q: Learning) -> dict[str, Any]:
        async with self.db.transaction() as tx:
            await tx.ensure_profile(q.agent_id)
            row = await tx.apply_learning(
                q.agent_id, q.learning_score, q.success_rate, q.failure_rate, q.pass_rate,
                q.patterns or [], q.suggestions or [],
                self.caps["learning_patterns"], self.caps["improvement_suggestions"],
            )  # fmt: skip
        assert row is not None
        return to_wire(row)

    async def update(self, ctx: RequestContext, q: UpdateProfile) -> dict[str, Any]:
        return await self._update(self.db, q.agent_id, q.updates)

    async def bulk(self, ctx: RequestContext, q: BulkUpdate) -> dict[str, Any]:
        """All or nothing: one transaction; an unknown agent rolls every update back."""
        async with self.db.transaction() as tx:
            updated = {a: await self._update(tx, a, u) for a, u in sorted(q.updates.items())}
        return {"updated": updated}

    async def _update(self, db: MetricsDb, agent: str, update: ProfileUpdate) -> dict[str, Any]:
        fields = update_fields(update)
        if not fields:
            raise BadRequest(f"updates for {agent!r} name no field")
        row = await db.update_profile(agent, fields)
        if row is None:
            raise NotFound(f"no metrics profile for agent {agent!r}; nothing was updated")
        return to_wire(row)

    async def reset(self, ctx: RequestContext, q: ResetProfile) -> dict[str, Any]:
        row = await self.db.reset_profile(q.agent_id)
        if row is None:
            raise NotFound(f"no metrics profile for agent {q.agent_id!r}")
        return to_wire(row)

    async def create_or_update(self, ctx: RequestContext, q: CreateOrUpdateProfile) -> dict[str, Any]:
        fields = update_fields(q.metrics)
        async with self.db.transaction() as tx:
            await tx.ensure_profile(q.agent_id)
            row = await tx.set_profile(q.agent_id, msgspec.json.encode(fields).decode())
        assert row is not None
        return to_wire(row)

    async def custody(self, ctx: RequestContext, q: CustodyQuery) -> dict[str, Any]:
        row = await self.db.get_profile(q.agent_id)
        if row is None:
            raise NotFound(f"no metrics profile for agent {q.agent_id!r}")
        return to_wire(row)

    async def summary(self, ctx: RequestContext, q: SummaryQuery) -> dict[str, Any]:
        row = await self.db.summary()
        assert row is not None
        return {
            "total_agents": row["total_agents"],
            "agents": list(row["agents"]),
            "summary": {
                "total_learning_score": float(row["total_learning_score"]),
                "total_xp": int(row["total_xp"]),
                "total_tests_given": int(row["total_tests_given"]),
                "total_tests_passed": int(row["total_tests_passed"]),
                "average_level": float(row["average_level"]),
                "total_tests_failed": int(row["total_tests_failed"]),
                "total_custody_xp": int(row["total_custody_xp"]),
                "average_custody_level": float(row["average_custody_level"]),
                "total_adversarial_wins": int(row["total_adversarial_wins"]),
            },
        }
