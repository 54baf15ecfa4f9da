"""A job spec too big for its producer is refused before one URL is rendered: the expansion is counted
from the table and the ranges first (rows × range lengths)."""

from __future__ import annotations

import pytest

from fanfetch.core import spec_expand
from fanfetch.core.spec import parse_spec
from fanfetch.errors import ManifestError

SPEC = {"job": {"url": "https://example.org/{s}/{year}", "group": "{s}"},
        "table": {"rows": [{"s": i, "first": 1, "last": 400_000} for i in range(3)]},
        "expand": {"year": {"from": "first", "to": "last"}}}


def test_a_spec_over_the_limit_is_refused_before_it_is_expanded(monkeypatch):
    # GIVEN a spec of 3 rows × 400,000 years (1.2 million URLs) and a limit of 1,000,000
    rendered = []
    monkeypatch.setattr(spec_expand, "_render", lambda *a: rendered.append(a) or "x")
    # WHEN it is parsed / THEN it is refused by its total, naming the section, and nothing was rendered
    with pytest.raises(ManifestError) as info:
        parse_spec(SPEC, source="job.toml", max_urls=1_000_000)
    assert "job.toml: expand: the spec expands to 1,200,000 URLs, over the limit of 1,000,000" in str(info.value)
    assert rendered == []


def test_a_spec_within_the_limit_expands():
    small = dict(SPEC, table={"rows": [{"s": 1, "first": 1, "last": 10}]})
    assert parse_spec(small, source="job.toml", max_urls=10).file_count == 10
    with pytest.raises(ManifestError, match="expands to 10 URLs, over the limit of 9"):
        parse_spec(small, source="job.toml", max_urls=9)
