"""The test suite: real Redis, PostgreSQL, worker processes and the HTTP emulators."""
