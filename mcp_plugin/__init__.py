"""mcp_plugin: verify agent-broker tokens and authorize every MCP operation with Cerbos."""
