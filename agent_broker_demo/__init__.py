"""The demo MCP server of agent-broker: a small CRM, protected with mcp_plugin."""
