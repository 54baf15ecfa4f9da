"""The composition root: the only place real clients and adapters are built, one module per reason to change:
``aws`` (every AWS client), ``fetching`` (the guarded fetcher, the group context), ``destination`` (where a run writes),
``stack`` (the deployed stack's resources) and ``worker`` (the worker Lambda's WorkerApp). Nothing is re-exported here.

Clients are created lazily (on first use, never at import time) so ``moto.mock_aws`` can stand
in for AWS in tests, and a warm Lambda container reuses one HTTP pool and one set of clients.
"""
