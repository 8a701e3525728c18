"""How every program of the project logs: plain lines, or one JSON object per line.

``LOG_FORMAT=json`` (:attr:`core.settings.Settings.log_format`) makes each record one JSON
object with ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``process``, ``message`` and, when
the record concerns a job, ``job_id``: from ``extra={"job_id": ...}`` or else the first
``job <uuid>`` in the message (every worker and bot line about a job says so). A log
collector (Loki, Elasticsearch, CloudWatch) can then select one job's lines across the bot and
every worker. Tracebacks go in ``exc``. Secrets were already removed by
:class:`core.redaction.RedactingFilter`, which runs on the handler before the formatter.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime

from core.redaction import install_log_redaction

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
_JOB_ID = re.compile(r"\bjob ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b")


def job_id_of(record: logging.LogRecord, message: str) -> str | None:
    """The job a record is about: its ``job_id`` extra, else the first ``job <uuid>`` it says."""
    given = getattr(record, "job_id", None)
    if given:
        return str(given)
    found = _JOB_ID.search(message)
    return found.group(1) if found else None


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": message,
        }
        job_id = job_id_of(record, message)
        if job_id:
            entry["job_id"] = job_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text", *, secrets: Iterable[str] = ()) -> None:
    """Set up the root logger of a program (once, at its start), with secrets redacted."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    install_log_redaction(list(secrets))
