"""Worker Lambda: an SQS batch of up to 10 groups → downloads, merges, stores; answers with the
partial batch response so only failed groups come back (Powertools owns that contract)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from fanfetch.adapters.observability import log_group_result, make_logger, make_metrics, record_group_metrics
from fanfetch.app.worker import run_batch
from fanfetch.bootstrap.worker import WorkerApp, build_worker_app
from fanfetch.core.models import OnMissing

processor = BatchProcessor(event_type=EventType.SQS)
logger = make_logger()
metrics = make_metrics()
_app: WorkerApp | None = None  # one HTTP pool and one S3 client per warm container


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _app
    _app = _app or build_worker_app()
    ends_at = _app.ctx.clock.monotonic() + context.get_remaining_time_in_millis() / 1000
    if _app.call_deadline is not None:  # no AWS attempt starts that could outlast this invocation
        _app.call_deadline.start(ends_at)
    outcome = run_batch(event.get("Records", []), _app.ctx, groups_in_flight=_app.settings.groups_in_flight,
                        deadline=ends_at - _app.settings.deadline_reserve_s, dead_letters=_app.dead_letters,
                        max_receive_count=_app.settings.max_receive_count, book=_app.book,
                        on_missing=OnMissing(_app.settings.on_missing), failure_store=_app.failure_store)
    for verdict in outcome.verdicts.values():
        if verdict.result is not None:
            log_group_result(logger, verdict.result, job_id=verdict.job_id or "",
                             extra={"dead_lettered": verdict.dead_lettered})
            record_group_metrics(metrics, verdict.result)
    for problem in outcome.finish_errors:
        logger.error(problem)

    def settle(record: SQSRecord) -> object:
        return outcome.settle(record.get("messageId"))  # a record without one was dead-lettered as poison

    return process_partial_response(event=event, record_handler=settle, processor=processor, context=context)
