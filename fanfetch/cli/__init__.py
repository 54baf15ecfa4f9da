"""The `fanfetch` command: one module per command group, each asking `fanfetch.bootstrap` for adapters."""
