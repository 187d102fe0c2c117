"""Helpers for testing a server protected with mcp_plugin (they ship with the product).

- `TestKeyPair`, `BrokerTokenFactory`: mint broker-shaped agent tokens, good or bad.
- `FakeBroker`, `run_broker`: serve the broker's metadata and JWKS (MockTransport or HTTP).
- `Endpoint`: reserve a loopback port, then serve a protected FastMCP app there in-process.
"""

from mcp_plugin.testing.servers import Endpoint, FakeBroker, run_broker
from mcp_plugin.testing.tokens import BrokerTokenFactory, TestKeyPair, build_act

__all__ = [
    "BrokerTokenFactory",
    "Endpoint",
    "FakeBroker",
    "TestKeyPair",
    "build_act",
    "run_broker",
]
