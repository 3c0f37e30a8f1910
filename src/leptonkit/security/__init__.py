"""API keys, rate limits and the audit log: the server's security state, independent of HTTP."""
