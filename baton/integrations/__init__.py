"""Outbound adapters: LLM providers and, later, HTTP, MCP, Slack and email."""
