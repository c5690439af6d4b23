"""Command-line tools registered as `celery` sub-commands."""
