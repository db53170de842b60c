"""Application logic that the API, the worker, triggers and benchmarks share."""
