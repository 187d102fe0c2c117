"""`broker.pdp.cerbos.to_value` builds protobuf Values through `Struct`'s setter, not
ParseDict (whose generic walk was most of building a CheckResources request); it must build
exactly what ParseDict builds, for any JSON a token's claims can hold, and refuse what
ParseDict refuses."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.pdp.cerbos import to_value

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text()
    | st.floats(allow_nan=True, allow_infinity=True),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


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
