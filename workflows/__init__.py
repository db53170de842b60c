"""Durable orchestration. Deterministic code only: everything that touches the world is an
activity (see `activities/`)."""
