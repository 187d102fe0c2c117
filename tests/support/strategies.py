"""Hypothesis strategies shared by property tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def claim_values(*, finite: bool = False, max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """What `json.loads` of a token's claims can give: null, booleans, 64-bit integers, text,
    floats (NaN and infinities unless `finite`: Python's json reads them, JSON cannot carry
    them), and lists and objects of these."""
    return st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text()
        | st.floats(allow_nan=not finite, allow_infinity=not finite),
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=max_leaves,
    )
