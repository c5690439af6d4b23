"""Local emulators of external services used by the pipeline (demo and tests)."""
