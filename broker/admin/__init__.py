"""Admin operations on agent sessions: list, inspect, revoke, audit. Shared by the HTTP admin
API, the web console and the CLI; authentication and authorization belong to the callers."""
