"""The composition root: the only place real clients and adapters are built, one module per reason to change —
``aws`` (how every AWS client is made), ``fetching`` (the fetcher, its guard and the group context), ``destination``
(where a run writes, a local run's ledger file), ``stack`` (the deployed stack's queue, ledger, bus, buckets and
functions) and ``worker`` (the worker Lambda's WorkerApp). Entry points import the module they need; nothing is
re-exported here.

Clients are created lazily (on first use, never at import time) so ``moto.mock_aws`` can stand
in for AWS in tests, and a warm Lambda container reuses one HTTP pool and one set of clients.
"""
