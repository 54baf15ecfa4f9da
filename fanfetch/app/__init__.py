"""Use cases: orchestrate a job through ports (never adapters or entry points); core below, adapters and
entry points above."""
