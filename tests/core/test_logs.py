"""LOG_FORMAT=json: one JSON object per line, with the job id, secrets redacted; a program's
own root logger, so each case runs in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from core.settings import Settings, SettingsError, load_settings

PROGRAM = """
import logging, sys
from core.logs import configure_logging
configure_logging("INFO", sys.argv[1], secrets=["s3cr3t-token"])
log = logging.getLogger("gpu_worker.service")
log.info("job %s done in 0.21 s", sys.argv[2])
log.info("about another", extra={"job_id": "given-id"})
log.debug("not shown at INFO")
try:
    raise RuntimeError("boom with s3cr3t-token")
except RuntimeError:
    log.exception("worker listening; token s3cr3t-token")
"""


def _run(log_format: str, job_id: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, log_format, job_id], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stderr.strip().splitlines()


def test_json_lines_carry_the_job_id_and_no_secret() -> None:
    job_id = str(uuid.uuid4())
    lines = _run("json", job_id)
    entries = [json.loads(line) for line in lines]  # every line is one object
    assert [e["message"] for e in entries][:2] == [f"job {job_id} done in 0.21 s", "about another"]
    assert [e.get("job_id") for e in entries] == [job_id, "given-id", None]
    assert {e["level"] for e in entries} == {"INFO", "ERROR"} and entries[0]["logger"] == "gpu_worker.service"
    assert entries[0]["time"].endswith("+00:00") and entries[0]["process"] == "MainProcess"
    assert "RuntimeError: boom" in entries[2]["exc"]
    assert "s3cr3t-token" not in "\n".join(lines)


def test_text_lines_stay_the_default() -> None:
    job_id = str(uuid.uuid4())
    lines = _run("text", job_id)
    assert f"INFO MainProcess gpu_worker.service: job {job_id} done in 0.21 s" in lines[0]
    assert "s3cr3t-token" not in "\n".join(lines)


def test_an_unknown_log_format_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().log_format == "text"
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    assert load_settings().log_format == "json"
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        load_settings()
