"""The REST request is the gRPC request in protobuf's JSON mapping: for the same question, the
JSON body parsed as a CheckResourcesRequest is byte for byte what the gRPC point sends, and
`MessageToDict` of that is the body. Answers that are not CheckResources responses raise."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cerbos.engine.v1 import engine_pb2
from cerbos.request.v1 import request_pb2
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.pdp import cerbos_json
from broker.pdp.cerbos import (
    ADMIN_KIND,
    AdminCheck,
    ResourceEntry,
    _to_values,
    build_principal,
    build_resources,
    principal_roles,
    to_value,
)
from broker.ports import DelegationQuestion
from tests.support.strategies import claim_values

CLAIM = claim_values(finite=True, max_leaves=12)  # what JSON cannot carry: tested apart
ROLE = st.sampled_from(["sales_rep", "crm_admin", "user", "9bad", "a b", "ns:role", ""])
SCOPES = st.lists(st.sampled_from(["crm:read", "crm:write", "crm:delete", "email:send"]),
                  min_size=1, max_size=4, unique=True)


def grpc_request(principal: Any, entries: list[Any]) -> request_pb2.CheckResourcesRequest:
    return request_pb2.CheckResourcesRequest(request_id="rid", principal=principal,
                                             resources=entries)


def as_grpc(body: bytes) -> request_pb2.CheckResourcesRequest:
    return json_format.Parse(body, request_pb2.CheckResourcesRequest())


def same(body: bytes, expected: request_pb2.CheckResourcesRequest) -> None:
    assert as_grpc(body).SerializeToString(deterministic=True) == \
        expected.SerializeToString(deterministic=True)
    # Cerbos reads every JSON number as a double, as protobuf's Value holds it
    assert json.loads(body, parse_int=float) == json_format.MessageToDict(expected)


@settings(max_examples=200, deadline=None)
@given(subject=st.text(min_size=1, max_size=8), roles=st.lists(ROLE, max_size=4),
       claims=st.dictionaries(st.text(max_size=8), CLAIM, max_size=5), scopes=SCOPES,
       actors=st.lists(st.text(max_size=6), max_size=3))
def test_delegation_request_is_the_grpc_request(subject: str, roles: list[str],
                                                claims: dict[str, Any], scopes: list[str],
                                                actors: list[str]) -> None:
    question = DelegationQuestion(subject, tuple(roles), claims, "research-agent",
                                  "http://127.0.0.1:8401/mcp", scopes, tuple(actors))
    body = cerbos_json.request_body(
        cerbos_json.principal(subject, roles, claims),
        cerbos_json.delegation_resources(question), "rid")
    same(body, grpc_request(build_principal(subject, roles, claims), build_resources(question)))


def test_admin_request_is_the_grpc_request() -> None:
    checks = [AdminCheck("sessions:list", "all-sessions", {"user": "", "agent": ""}),
              AdminCheck("sessions:read", "sid-1#sessions:read", {"user": "bob", "n": 2}),
              AdminCheck("agents:list", "agents")]
    entries = [ResourceEntry(actions=[c.action], resource=engine_pb2.Resource(
        kind=ADMIN_KIND, id=c.resource_id, attr=_to_values(c.attr))) for c in checks]
    body = cerbos_json.request_body(cerbos_json.principal("root", ["admin"], {"email": "r@x"}),
                                    cerbos_json.admin_resources(checks), "rid")
    same(body, grpc_request(build_principal("root", ["admin"], {"email": "r@x"}), entries))


def test_roles_cerbos_cannot_name_are_dropped_and_user_is_added_once() -> None:
    assert principal_roles(["sales_rep", "a b", "user", "", "9x", "sales_rep", "ns:r"]) == \
        ["sales_rep", "user", "ns:r"]
    assert cerbos_json.principal("alice", ["a b"], {})["roles"] == ["user"]


@pytest.mark.parametrize("value", [
    float("nan"), float("inf"), -float("inf"), [1.0, float("nan")], {"k": float("inf")},
    "lone \ud800 surrogate", ["\udfff"], {"\ud800": 1}, 10**400, b"bytes", {1: "int key"},
    object(), {"a": {1, 2}},
])
def test_what_json_cannot_carry_is_dropped_not_the_request(value: Any) -> None:
    attr = {"kept": "yes", "dropped": value}
    principal = cerbos_json.principal("alice", [], attr)
    assert principal["attr"] == {"kept": "yes"}
    cerbos_json.request_body(principal, [], "rid")  # still encodes


@pytest.mark.parametrize("value", ["héllo ✓", 2**63, -(2**60), 1.5, None, True, [], {}])
def test_what_json_carries_is_kept(value: Any) -> None:
    assert cerbos_json.json_attr({"v": value}) == {"v": value}
    to_value(value)  # and protobuf carries it too


def test_empty_attributes_are_left_out_as_protobuf_leaves_them_out() -> None:
    assert "attr" not in cerbos_json.principal("alice", [], {"bad": float("nan")})
    assert "attr" not in cerbos_json.admin_resources([AdminCheck("a", "r")])[0]["resource"]


def test_read_effects() -> None:
    body = json.dumps({"requestId": "rid", "results": [
        {"resource": {"id": "crm:read", "kind": "delegated_scope"},
         "actions": {"delegate": "EFFECT_ALLOW"}},
        {"resource": {"id": "crm:delete", "kind": "delegated_scope"},
         "actions": {"delegate": "EFFECT_DENY"}},
    ], "cerbosCallId": "x"}).encode()
    assert cerbos_json.read_effects(body) == {"crm:read": {"delegate": "EFFECT_ALLOW"},
                                              "crm:delete": {"delegate": "EFFECT_DENY"}}
    assert cerbos_json.read_effects(b'{"requestId": "rid"}') == {}


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b'"results"', b'{"results": "x"}', b'{"results": [1]}',
    b'{"results": [{"actions": {}}]}', b'{"results": [{"resource": {"id": 7}}]}',
    b'{"results": [{"resource": {"id": "a"}, "actions": ["delegate"]}]}',
    b'{"results": [{"resource": null}]}', b"\xff\xfe",
])
def test_anything_else_is_a_malformed_response(body: bytes) -> None:
    with pytest.raises(cerbos_json.MalformedResponse):
        cerbos_json.read_effects(body)
