"""Posting finished and failed jobs to Discord, exactly once.

One concern per module: :mod:`~bot.delivery.service` (LISTEN, sweep, queue, locks),
:mod:`~bot.delivery.messages` (what a result says and carries),
:mod:`~bot.delivery.files` (NSFW rule, fitting uploads), :mod:`~bot.delivery.posting`
(webhook or channel, retries, never twice), :mod:`~bot.delivery.acks` (what Redis keeps).

A worker ends a job with one transaction that also sends ``NOTIFY job_events, '<job id>'``.
The bot LISTENs on that channel and also sweeps the database for ended jobs without a
result message (notifications are lost while the bot is down), so every job is delivered
after any restart.

Where the result goes:

* while the interaction token lives (15 minutes, less a safety margin), the job's
  acknowledgement message becomes the result (an edit of ``@original``: retrying it can
  never post twice); jobs that share an interaction (permutations, ``--repeat``) get a
  follow-up message each;
* after that, or when the acknowledgement is gone, a channel message that replies to the
  acknowledgement and mentions the user.

The message id is stored on the job (``set_result_message``); a job that has one is
skipped. Before a new message is posted a marker is set in Redis; a delivery that finds
the marker but no stored id (the bot died between posting and storing) looks for the
message in the channel before posting again. A Redis lock keeps two deliveries of one job
(LISTEN and a sweep, or two bot processes) from running at once. Discord's 429s and 5xx
are retried with backoff; the GPU never waits on any of this.

Images bigger than the upload limit are re-encoded (WebP, then JPEG) and then scaled
down until they fit. Images flagged NSFW are shown as they are in NSFW channels and DMs,
and elsewhere behind a spoiler or withheld, by the server's policy.
"""

from bot.delivery.acks import AckRecord, AckStore
from bot.delivery.files import DEFAULT_SIZE_LIMIT, NsfwMode, fit_image, nsfw_mode
from bot.delivery.messages import Prepared
from bot.delivery.posting import Outcome, token_alive
from bot.delivery.service import MAX_FAILURES, SWEEP_WINDOW, Delivery

__all__ = [
    "DEFAULT_SIZE_LIMIT",
    "MAX_FAILURES",
    "SWEEP_WINDOW",
    "AckRecord",
    "AckStore",
    "Delivery",
    "NsfwMode",
    "Outcome",
    "Prepared",
    "fit_image",
    "nsfw_mode",
    "token_alive",
]

