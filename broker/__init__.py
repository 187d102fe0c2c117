"""agent-broker: an RFC 8693 token exchange service that mints attenuated agent tokens."""
