"""Google's Agent Development Kit on agentstore: `AgentstoreSessionService`, ADK's
`BaseSessionService`, kept per agent by the logs service over NATS (nothing in the agent
talks to a database).

    from google.adk.runners import Runner
    from agentstore import AgentClient
    from agentstore.adk import AgentstoreSessionService

    async with await AgentClient.connect(None, "concierge-1") as client:
        runner = Runner(agent=root_agent, app_name="concierge",
                        session_service=AgentstoreSessionService(client))

Sessions, their events and the three scopes of state (`app:` shared by an app's users,
`user:` by a user's sessions, the session's own; `temp:` never stored) follow ADK's rules as
its `InMemorySessionService` has them. Everything lives in the agent's memory store
(CONTRACT v1.8, `agents.{agent}.rpc.store.batch`) under the namespace `("adk", app, ...)`:
a state key per item (no read-modify-write: two sessions changing one user's state never
undo each other), an event per item in the order appended, kept as JSON text so any key a
tool's arguments hold is stored as given. An append is one request: the event, the
session's time and every state delta together. `pip install 'agentstore[adk]'` brings ADK.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.sessions import _session_util
from google.adk.sessions.base_session_service import (
    BaseSessionService,
    GetSessionConfig,
    ListSessionsResponse,
)
from google.adk.sessions.session import Session
from google.adk.sessions.state import State

from agentstore import contract
from agentstore.client import AgentClient
from agentstore.schemas import store as st

PAGE = 1000  # a search's most items


def _sessions(app: str, user: str | None = None) -> list[str]:
    return ["adk", app, "sessions", *([user] if user is not None else [])]


def _app_state(app: str) -> list[str]:
    return ["adk", app, "app"]


def _user_state(app: str, user: str | None = None) -> list[str]:
    return ["adk", app, "user", *([user] if user is not None else [])]


def _session_state(app: str, user: str | None = None, session: str | None = None) -> list[str]:
    return [
        "adk",
        app,
        "state",
        *([user] if user is not None else []),
        *([session] if session is not None else []),
    ]


def _events(app: str, user: str, session: str) -> list[str]:
    return ["adk", app, "events", user, session]


def _put(namespace: list[str], key: str, value: Any) -> st.PutItem:
    """A value kept as JSON text: state and events may hold keys a document store refuses."""
    return st.PutItem(namespace=namespace, key=key, value={"json": json.dumps(value)})


def _delete(namespace: list[str], key: str) -> st.PutItem:
    return st.PutItem(namespace=namespace, key=key, value=None)


def _loaded(item: st.StoreItem) -> Any:
    return json.loads(item.value["json"])


class AgentstoreSessionService(BaseSessionService):
    """ADK sessions of the client's agent (another agent's are not reachable)."""

    def __init__(self, client: AgentClient) -> None:
        self.client = client

    async def _batch(self, ops: Sequence[st.StoreOp]) -> list[st.OpResult]:
        reply = await self.client.call(contract.STORE_BATCH, st.StoreBatch(ops=list(ops)))  # type: ignore[arg-type]
        return list(reply.results)

    async def _all(self, prefix: list[str]) -> list[st.StoreItem]:
        """Every item under `prefix`, in the order first put."""
        items: list[st.StoreItem] = []
        while True:
            (page,) = await self._batch(
                [st.SearchItems(namespace_prefix=prefix, limit=PAGE, offset=len(items))]
            )
            items += page.items or []
            if len(page.items or []) < PAGE:
                return items

    async def _state(self, prefix: list[str]) -> dict[str, Any]:
        return {i.key: _loaded(i) for i in await self._all(prefix)}

    async def _merged(self, app: str, user: str, session: Session) -> Session:
        """The session's state with the app's (`app:`) and the user's (`user:`) merged in."""
        for key, value in (await self._state(_app_state(app))).items():
            session.state[State.APP_PREFIX + key] = value
        for key, value in (await self._state(_user_state(app, user))).items():
            session.state[State.USER_PREFIX + key] = value
        return session

    @staticmethod
    def _deltas(app: str, user: str, session: str, state: dict[str, Any]) -> list[st.StoreOp]:
        d = _session_util.extract_state_delta(state)
        return [
            *(_put(_app_state(app), k, v) for k, v in d["app"].items()),
            *(_put(_user_state(app, user), k, v) for k, v in d["user"].items()),
            *(_put(_session_state(app, user, session), k, v) for k, v in d["session"].items()),
        ]

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        session_id = session_id.strip() if session_id else None
        if session_id:
            (found,) = await self._batch([st.GetItem(namespace=_sessions(app_name, user_id), key=session_id)])
            if found.item is not None:
                raise AlreadyExistsError(f"Session with id {session_id} already exists.")
        session_id = session_id or uuid.uuid4().hex
        now = time.time()
        await self._batch([
            *self._deltas(app_name, user_id, session_id, state or {}),
            _put(_sessions(app_name, user_id), session_id, {"last_update_time": now}),
        ])  # fmt: skip
        session_state = _session_util.extract_state_delta(state or {})["session"]
        session = Session(app_name=app_name, user_id=user_id, id=session_id, state=dict(session_state),
                          last_update_time=now)  # fmt: skip
        return await self._merged(app_name, user_id, session)

    async def get_session(
        self, *, app_name: str, user_id: str, session_id: str, config: GetSessionConfig | None = None
    ) -> Session | None:
        session_id = session_id.strip() if session_id else session_id
        (found,) = await self._batch([st.GetItem(namespace=_sessions(app_name, user_id), key=session_id)])
        if found.item is None:
            return None
        events = [
            Event.model_validate(_loaded(i)) for i in await self._all(_events(app_name, user_id, session_id))
        ]
        if config is not None:
            if config.num_recent_events is not None:
                events = events[-config.num_recent_events :] if config.num_recent_events else []
            if config.after_timestamp is not None:
                i = len(events) - 1
                while i >= 0 and events[i].timestamp >= config.after_timestamp:
                    i -= 1
                if i >= 0:
                    events = events[i + 1 :]
        session = Session(
            app_name=app_name, user_id=user_id, id=session_id, events=events,
            state=await self._state(_session_state(app_name, user_id, session_id)),
            last_update_time=_loaded(found.item)["last_update_time"],
        )  # fmt: skip
        return await self._merged(app_name, user_id, session)

    async def list_sessions(self, *, app_name: str, user_id: str | None = None) -> ListSessionsResponse:
        """Sessions without their events, state merged, least recently updated first."""
        records = await self._all(_sessions(app_name, user_id))
        states: dict[tuple[str, str], dict[str, Any]] = {}
        for item in await self._all(_session_state(app_name, user_id)):
            states.setdefault((item.namespace[3], item.namespace[4]), {})[item.key] = _loaded(item)
        app_state = await self._state(_app_state(app_name))
        user_states: dict[str, dict[str, Any]] = {}
        for item in await self._all(_user_state(app_name, user_id)):
            user_states.setdefault(item.namespace[3], {})[item.key] = _loaded(item)
        sessions = []
        for r in records:
            user = r.namespace[3]
            state = dict(states.get((user, r.key), {}))
            state.update({State.APP_PREFIX + k: v for k, v in app_state.items()})
            state.update({State.USER_PREFIX + k: v for k, v in user_states.get(user, {}).items()})
            sessions.append(Session(app_name=app_name, user_id=user, id=r.key, state=state,
                                    last_update_time=_loaded(r)["last_update_time"]))  # fmt: skip
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        session_id = session_id.strip() if session_id else session_id
        events = await self._all(_events(app_name, user_id, session_id))
        state = await self._all(_session_state(app_name, user_id, session_id))
        ops = [_delete(_sessions(app_name, user_id), session_id)]
        ops += [_delete(list(i.namespace), i.key) for i in [*events, *state]]
        for start in range(0, len(ops), st.MAX_OPS):
            await self._batch(ops[start : start + st.MAX_OPS])

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        return await self._state(_user_state(app_name, user_id))

    async def append_event(self, session: Session, event: Event) -> Event:
        if event.partial:
            return event
        app, user, sid = session.app_name, session.user_id, session.id
        record, stored = await self._batch([
            st.GetItem(namespace=_sessions(app, user), key=sid),
            st.GetItem(namespace=_events(app, user, sid), key=event.id),
        ])  # fmt: skip
        if record.item is None:
            raise SessionNotFoundError(f"Session {sid} not found.")
        if stored.item is not None:  # a retried append
            return event
        await super().append_event(session=session, event=event)  # temp: state applied, then trimmed
        session.last_update_time = event.timestamp
        delta = event.actions.state_delta if event.actions and event.actions.state_delta else {}
        # One request: the event, the session's time and the state deltas together.
        await self._batch([
            _put(_events(app, user, sid), event.id, event.model_dump(mode="json", exclude_none=True)),
            _put(_sessions(app, user), sid, {"last_update_time": event.timestamp}),
            *self._deltas(app, user, sid, delta),
        ])  # fmt: skip
        return event
