"""A tool's steps: the kinds of step there are (`registry`) and the one interpreter of a
tool's steps (`engine`), which a tool run's workflow and an enrichment batch both use. Pure:
no I/O, no clock, so workflows may import it."""
