"""Secrets and server paths never reach a log line or a user."""

from __future__ import annotations

import logging

import pytest

from core.redaction import REDACTED, install_log_redaction, redact, strip_paths, user_safe

TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDpZb3VyVG9rZW5IZXJlMTIzNDU2Nzg5MA"
BOT_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"


@pytest.mark.parametrize(
    "line",
    [
        f"We are being rate limited. PATCH https://discord.com/api/v10/webhooks/1234567/{TOKEN}/messages/@original",
        f"POST /api/v10/interactions/998877665544/{TOKEN}/callback responded with 404",
        f"Authorization: Bot {BOT_TOKEN}",
        f"token {BOT_TOKEN} rejected",
    ],
)
def test_tokens_in_urls_and_headers_are_redacted(line: str) -> None:
    cleaned = redact(line)
    assert TOKEN not in cleaned and BOT_TOKEN not in cleaned and REDACTED in cleaned


def test_url_passwords_and_configured_secrets_are_redacted() -> None:
    cleaned = redact("connecting to postgresql+asyncpg://app:hunter2secret@db:5432/x and redis://:pw123456@r:6379/0")
    assert "hunter2secret" not in cleaned and "pw123456" not in cleaned and "app:" in cleaned
    assert redact("the key is s3cr3t-value!", ["s3cr3t-value"]) == f"the key is {REDACTED}!"


def test_paths_become_file_names_and_prose_is_left_alone() -> None:
    assert strip_paths("file /srv/imaginarium/data/models/x.safetensors does not exist") == (
        "file `x.safetensors` does not exist"
    )
    assert strip_paths(r"C:\Users\op\models\y.ckpt is pickle") == "`y.ckpt` is pickle"
    for prose in ("a red/blue circle", "use /blend with 2 images", "16:9 and 1/2 size", "see https://x.com/a/b"):
        assert strip_paths(prose) == prose


def test_user_safe_is_one_short_line() -> None:
    text = user_safe(f"loading /home/op/loras/style.safetensors failed\nTraceback ...\n{TOKEN}", limit=60)
    assert text == "loading `style.safetensors` failed" and "\n" not in text


def test_the_log_filter_rewrites_messages_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redaction")
    handler = logging.StreamHandler()
    logging.getLogger().addHandler(handler)
    try:
        install_log_redaction([BOT_TOKEN])
        records: list[str] = []

        class Capture(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(self.format(record))

        capture = Capture()
        capture.addFilter(handler.filters[0])
        logger.addHandler(capture)
        logger.warning("rate limited on %s", f"/webhooks/1/{TOKEN}")
        try:
            raise RuntimeError(f"bad token {BOT_TOKEN}")
        except RuntimeError:
            logger.exception("failed")
        logger.removeHandler(capture)
    finally:
        logging.getLogger().removeHandler(handler)
    joined = "\n".join(records)
    assert TOKEN not in joined and BOT_TOKEN not in joined
    assert "rate limited on /webhooks/1/[redacted]" in joined and "RuntimeError" in joined
