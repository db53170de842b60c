"""Baton: a self-hosted platform for AI agents on Temporal. The library the API, workflows,
activities and worker share."""
