"""Producer Lambda: a manifest (``{"manifest": "s3://…"}``, inline ``{"groups": […]}`` or ``{"spec": {…}}``)
becomes one SQS message per group (``"refresh": true`` for an incremental re-run).
Returns ``{"job_id", "groups", "messages"}``."""

from __future__ import annotations

import os
import time
from typing import Any

from fanfetch.app.jobs import results_key_for
from fanfetch.app.preflight import preflight_producer
from fanfetch.app.producer_events import producer_max_urls, request_from_event
from fanfetch.app.services import enqueue_job
from fanfetch.bootstrap.fetching import configure_redaction, guard_resolver
from fanfetch.bootstrap.stack import build_ledger, build_manifest_reader, build_output_store, build_queue
from fanfetch.settings import Settings


def handler(event: dict[str, Any], context: Any) -> dict[str, object]:
    configure_redaction()  # as the worker does: its errors name URLs too
    settings = Settings.from_env(os.environ, require=("QUEUE_URL",))
    request = request_from_event(event, manifests=build_manifest_reader(), bucket=settings.bucket_name,
                                 key_prefix=settings.output_key_prefix,
                                 max_spec_urls=producer_max_urls(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")))
    # where the worker's store (BUCKET_NAME + OUTPUT_PREFIX, the same variables) writes the results manifest
    results = f"s3://{settings.bucket_name}/{settings.output_key_prefix}{results_key_for(request.job.job_id)}"
    ledger = build_ledger(settings)
    preflight_producer(request.job, settings, ledger=ledger, store=build_output_store(settings),
                       resolve=guard_resolver(settings.allow_hosts), now=time.time())
    return enqueue_job(request.job, build_queue(settings), refresh=request.refresh, ledger=ledger,
                       results_location=results).to_dict()
