"""The AsyncAPI document is generated from the schema code and covers every served subject."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
from nats.aio.client import Client

from agentstore import contract
from agentstore.asyncapi import TEXT_FIELDS, document, render
from agentstore_server.config import Settings
from agentstore_server.lifecycle.runner import running
from agentstore_server.registry import SERVICES

DOC = Path(__file__).parent.parent / "docs" / "asyncapi.json"


def test_checked_in_asyncapi_matches_the_code() -> None:
    assert DOC.read_text() == render(), "regenerate: python -m agentstore.asyncapi > docs/asyncapi.json"


def _texts(node: object, path: str = "$") -> list[tuple[str, str]]:
    """Every prose field of the document (description, summary, title), with its path."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in TEXT_FIELDS and isinstance(value, str):
                found.append((f"{path}.{key}", value))
            else:
                found += _texts(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _texts(value, f"{path}[{i}]")
    return found


def test_no_description_carries_indentation_or_trailing_whitespace_from_source() -> None:
    """The checked-in text depends on the contract alone: docstrings reach the document without
    the indentation of the source they were written in (msgspec 0.22 kept it, 0.23 does not)."""
    texts = _texts(json.loads(render()))
    assert any("\n" in text for _, text in texts)  # multi-line docstrings are there to check
    for path, text in texts:
        for line in text.splitlines():
            assert line == line.rstrip(), f"{path}: trailing whitespace in {line!r}"
            assert not line.startswith((" ", "\t")), f"{path}: indented line {line!r}"
        assert text == text.strip(), f"{path}: leading or trailing blank text"


def test_asyncapi_is_an_asyncapi_3_document_with_resolvable_refs() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    text = json.dumps(doc)
    for ref in {r.split('"')[0] for r in text.split('"$ref": "')[1:]}:
        node: object = doc
        for part in ref.lstrip("#/").split("/"):
            assert isinstance(node, dict) and part in node, f"dangling $ref {ref}"
            node = node[part]


async def test_every_endpoint_the_services_serve_is_in_the_document(settings: Settings, nc: Client) -> None:
    addresses = {c["address"].replace("{agent}", "*") for c in document()["channels"].values()}
    for spec in SERVICES.values():
        if not contract.endpoints_of(spec.name):
            continue  # the web console serves HTTP only
        async with running(spec, settings):
            msg = await nc.request(f"$SRV.INFO.agentstore-{spec.name}", b"", timeout=5)
            for endpoint in msgspec.json.decode(msg.data)["endpoints"]:
                assert endpoint["subject"] in addresses, endpoint["subject"]
