"""`python -m mcp_server` speaks MCP over stdio (a local agent starts it); `python -m mcp_server --http
[--host H] [--port N]` serves Streamable HTTP at /mcp, bearer tokens required.

Over stdio no token is sent: the server acts with MCP_STDIO_SCOPES (default read) on MCP_STDIO_PROFILES
(default every profile). stdout is the protocol's then; logs go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from infra.logging import configure_from_settings
from mcp_server.server import ToolsetError, build_server, exposed_tools, http_app
from settings import SettingsError, get_settings

log = logging.getLogger("mcp_server")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mcp_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--http", action="store_true", help="serve Streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="with --http: the address to listen on")
    parser.add_argument("--port", type=int, default=None, help="with --http: the port (default MCP_PORT)")
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
        tools = exposed_tools(settings.mcp_tools)
    except (SettingsError, ToolsetError) as exc:  # a clean message naming the setting, not a traceback
        sys.exit(f"mcp server: {exc}")
    configure_from_settings()
    server = build_server(settings, http=args.http)
    if not args.http:
        log.info("mcp server over stdio: tools %s; scopes %s", ", ".join(tools), ", ".join(settings.mcp_stdio_scopes))
        server.run()
        return
    port = args.port or settings.mcp_port
    log.info("mcp server over HTTP on %s:%d/mcp: tools %s; allowed hosts %s", args.host, port, ", ".join(tools),
             ", ".join(settings.mcp_allowed_hosts))
    # log_config=None: uvicorn's lines go through our JSON logging too.
    uvicorn.Server(uvicorn.Config(http_app(server, settings, args.host), host=args.host, port=port, log_config=None,
                                  log_level=settings.log_level.lower())).run()


if __name__ == "__main__":
    main()
