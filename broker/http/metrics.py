"""Prometheus metrics, registered once per process."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EXCHANGES = Counter("agent_broker_exchanges_total", "Token exchanges by outcome", ["outcome"])
EXCHANGE_SECONDS = Histogram(
    "agent_broker_exchange_seconds", "Time to answer a token exchange request",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
