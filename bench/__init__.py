"""`make bench`: the performance claims of agent-broker measured on the machine it runs on.

`python -m bench [--smoke] [--only NAME]` starts its own real services (Redis, Cerbos, the dev
OIDC provider, broker processes, MCP server processes) on free loopback ports, runs
each measure in `bench.measures.MEASURES`, prints a table and writes `bench/results.json`.
docs/performance.md explains every figure. A measure is a module with a `MEASURE` object
(`bench.measure.Measure`), so new ones plug in without touching the runner.
"""
