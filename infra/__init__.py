"""Process-wide infrastructure: Redis, rate limits, library fixes."""
