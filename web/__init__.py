"""The web process: `/health`, `/stats` and the Wappi webhook, as a plain WSGI app."""
