"""Texts posted to users: a failed job's message says why without server paths or tokens."""

from __future__ import annotations

import uuid

from bot import render


def test_a_failure_message_has_a_reason_a_refund_and_the_job_id_but_no_path_or_token() -> None:
    job_id = uuid.uuid4()
    token = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDpZb3VyVG9rZW5IZXJlMTIzNDU2Nzg5MA"
    error = (
        "model 'sd': loading /srv/imaginarium/models/sd/unet.safetensors failed; "
        f"see https://discord.com/api/webhooks/1/{token}\nTraceback (most recent call last): ..."
    )

    text = render.failed_text("a cat", user_id=42, error=error, refunded=3, job_id=job_id)

    assert "/srv" not in text and token not in text and "Traceback" not in text
    assert "`unet.safetensors`" in text and "Your 3 credits were refunded." in text
    assert str(job_id) in text and "<@42>" in text
