"""The deployed stack's adapters: a stack deployed before the ledger existed is refused in one line."""

from __future__ import annotations

import pytest

from fanfetch.adapters.stack_outputs import StackOutputs
from fanfetch.bootstrap.stack import build_stack_ledger
from fanfetch.errors import InputError


def test_a_stack_without_a_ledger_table_is_an_input_error_naming_it():
    stack = StackOutputs(name="old", bucket="b", queue_url="q", dlq_url="d", producer_function="p",
                         worker_function="w", ledger_table=None)
    with pytest.raises(InputError, match="stack 'old' has no LedgerTableName output"):
        build_stack_ledger(stack)
