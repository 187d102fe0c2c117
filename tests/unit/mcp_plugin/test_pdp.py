"""The Cerbos adapter without Cerbos: protobuf building, result matching, failing closed."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest
from cerbos.effect.v1 import effect_pb2
from cerbos.response.v1 import response_pb2

from mcp_plugin import CerbosPolicyPoint, CheckItem, Principal, ResourceRef
from mcp_plugin.pdp import build_entry, build_principal_proto, read_decisions

PRINCIPAL = Principal("alice", ("sales_rep", "user"),
                      {"scopes": ["crm:read"], "agent": "a", "actors": ["a"], "depth": 1})
ITEMS = [
    CheckItem(ResourceRef("mcp_server", "get_contact", {"tags": ["x"]}), "tools/list::get_contact"),
    CheckItem(ResourceRef("mcp_server", "send_email", {"arguments": {"to": "b@example.com"}}),
              "tools/call::send_email"),
]


def test_protobufs_carry_attributes() -> None:
    principal = build_principal_proto(PRINCIPAL)
    assert principal.id == "alice"
    assert list(principal.roles) == ["sales_rep", "user"]
    assert principal.attr["scopes"].list_value.values[0].string_value == "crm:read"
    entry = build_entry(ITEMS[1])
    assert list(entry.actions) == ["tools/call::send_email"]
    assert entry.resource.attr["arguments"].struct_value.fields["to"].string_value == (
        "b@example.com"
    )


def _response(*effects: tuple[str, int]) -> response_pb2.CheckResourcesResponse:
    response = response_pb2.CheckResourcesResponse(request_id="r", cerbos_call_id="c1")
    for (resource_id, effect), item in zip(effects, ITEMS, strict=False):
        result = response.results.add()
        result.resource.id = resource_id
        result.actions[item.action] = effect
        result.meta.actions[item.action].matched_policy = "resource.mcp_server.vdefault"
    return response


def test_results_are_matched_in_order() -> None:
    response = _response(("get_contact", effect_pb2.EFFECT_ALLOW),
                         ("send_email", effect_pb2.EFFECT_DENY))
    decisions = read_decisions(ITEMS, response, "r-0")
    assert [d.allowed for d in decisions] == [True, False]
    assert decisions[0].policy == "resource.mcp_server.vdefault"
    assert decisions[0].cerbos_call_id == "c1"


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(_response(("get_contact", effect_pb2.EFFECT_ALLOW)), id="too-few"),
        pytest.param(_response(("send_email", effect_pb2.EFFECT_ALLOW),
                               ("get_contact", effect_pb2.EFFECT_ALLOW)), id="out-of-order"),
    ],
)
def test_odd_answers_deny(response: response_pb2.CheckResourcesResponse) -> None:
    assert not any(d.allowed for d in read_decisions(ITEMS, response, "r-0"))


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts TCP connections and never says a word: a hung PDP."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


async def test_unreachable_cerbos_denies_everything(
    closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    pdp = CerbosPolicyPoint(f"127.0.0.1:{closed_port}", timeout=2.0)
    with caplog.at_level(logging.WARNING, logger="mcp_plugin.pdp"):
        decisions = await pdp.check(PRINCIPAL, ITEMS)
    await pdp.aclose()
    assert [d.allowed for d in decisions] == [False, False]
    assert all(d.failure and "PDP unavailable" in d.failure for d in decisions)
    assert any("unavailable" in r.getMessage() and "denying 2" in r.getMessage()
               for r in caplog.records)


async def test_slow_cerbos_denies_within_the_timeout(silent_port: int) -> None:
    pdp = CerbosPolicyPoint(f"127.0.0.1:{silent_port}", timeout=0.3)
    started = time.monotonic()
    decisions = await pdp.check(PRINCIPAL, ITEMS)
    elapsed = time.monotonic() - started
    await pdp.aclose()
    assert not any(d.allowed for d in decisions)
    assert "300 ms" in (decisions[0].failure or "")
    assert elapsed < 1.0


async def test_no_items_no_request(closed_port: int) -> None:
    assert await CerbosPolicyPoint(f"127.0.0.1:{closed_port}").check(PRINCIPAL, []) == []


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CerbosPolicyPoint("127.0.0.1:1", max_resources_per_request=0)
