"""The MCP server (issue 14): the assistant's chats, contacts, figures and dead letters for an outside
agent, and a few guarded writes. `python -m mcp_server` speaks stdio; `--http` serves Streamable HTTP.

Kept light: `celery` imports `cli.mcp_tokens` (and so `mcp_server.tokens`) for every command, so
nothing here imports the SDK; `server` does.
"""
