"""`broker.pdp.cerbos.to_value` builds protobuf Values through `Struct`'s setter, not
ParseDict (whose generic walk was most of building a CheckResources request); it must build
exactly what ParseDict builds, for any JSON a token's claims can hold, and refuse what
ParseDict refuses."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2
from hypothesis import given, settings

from broker.pdp.cerbos import to_value
from tests.support.strategies import claim_values

JSON = claim_values()


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_the_same_value_as_parse_dict(data: Any) -> None:
    expected = json_format.ParseDict(data, struct_pb2.Value())
    assert to_value(data).SerializeToString(deterministic=True) == \
        expected.SerializeToString(deterministic=True)


@pytest.mark.parametrize("data", [b"bytes", object(), {1: "a"}, [{"k": {2: "v"}}], {"a": {1}}])
def test_what_parse_dict_refuses_is_refused(data: Any) -> None:
    with pytest.raises((json_format.ParseError, TypeError, ValueError)):
        json_format.ParseDict(data, struct_pb2.Value())
    with pytest.raises((json_format.ParseError, TypeError, ValueError)):
        to_value(data)
