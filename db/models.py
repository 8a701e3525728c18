"""The Postgres schema as typed SQLAlchemy 2.0 models.

Longer than 400 lines on purpose: the whole schema in one file, each table beside the
constraints that protect it, is what the migrations are checked against.

Rules that protect money and job state live in the database itself, not only here: a CHECK
keeps balances non-negative, a trigger refuses UPDATE/DELETE on the credit ledger, another
trigger allows only the legal job status transitions (:data:`LEGAL_TRANSITIONS`), and
partial unique indexes make a hold, a capture and a refund happen at most once per job.
A job that reaches a terminal state sends ``NOTIFY job_events, '<job id>'`` from a trigger,
so the notification leaves exactly when the transaction that ended the job commits.
The triggers and the optional pg_trgm index are written in SQL in the migrations
(``migrations/versions/0001_initial_schema.py``), which stay frozen as written.

Relationships are ``lazy="raise"``: load what you need with ``selectinload`` so that an
async session never does hidden I/O.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnElement,
    Computed,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Text,
    UniqueConstraint,
    and_,
    func,
    or_,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, JSONB, TSVECTOR, UUID
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from core.spec import JobKind, Lane

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class JobStatus(enum.StrEnum):
    """Where a job is in its life. Legal moves are enforced by a database trigger."""

    QUEUED = "queued"
    """Waiting for a worker (new, or put back after a worker died)."""
    RUNNING = "running"
    """Claimed by a worker."""
    DONE = "done"
    """Images stored and credits captured. Terminal."""
    FAILED = "failed"
    """Gave up (error, attempts exhausted, can never run); credits refunded. Terminal."""
    CANCELLED = "cancelled"
    """Cancelled by the user while still queued; credits refunded. Terminal."""


# The only legal status moves; the status trigger (migrations 0001 and 0003) mirrors this table.
LEGAL_TRANSITIONS: frozenset[tuple[JobStatus, JobStatus]] = frozenset(
    {
        (JobStatus.QUEUED, JobStatus.RUNNING),
        (JobStatus.QUEUED, JobStatus.CANCELLED),
        (JobStatus.QUEUED, JobStatus.FAILED),
        (JobStatus.RUNNING, JobStatus.DONE),
        (JobStatus.RUNNING, JobStatus.FAILED),
        (JobStatus.RUNNING, JobStatus.QUEUED),
        (JobStatus.RUNNING, JobStatus.CANCELLED),
    }
)


class LedgerKind(enum.StrEnum):
    """What a credit ledger row records. ``amount`` is always the positive magnitude."""

    GRANT = "grant"
    """Credits given to the user (balance + amount)."""
    HOLD = "hold"
    """Credits reserved for a job when it is queued (balance - amount)."""
    CAPTURE = "capture"
    """A job's hold kept for good because the job finished (balance unchanged)."""
    RELEASE = "release"
    """A job's hold given back because it failed or was cancelled (balance + amount)."""
    REFUND = "refund"
    """The unrendered share of a captured hold, given back when a running job was cancelled
    (balance + amount)."""


class NsfwPolicy(enum.StrEnum):
    """What a server does with images the classifier flags as NSFW."""

    SPOILER = "spoiler"
    """Post them behind a spoiler (the default)."""
    WITHHOLD = "withhold"
    """Do not post them; tell the user they were withheld."""
    ALLOW = "allow"
    """Post them as they are (meant for NSFW channels)."""


def _pg_enum(cls: type[enum.Enum], name: str) -> Enum:
    # Store the lowercase values ("queued"), not the member names ("QUEUED"): the values are
    # what the triggers, raw SQL and the JSON payloads use.
    return Enum(cls, name=name, values_callable=lambda members: [m.value for m in members])


bigint_pk = Annotated[int, mapped_column(BigInteger, Identity(always=False), primary_key=True)]
snowflake = Annotated[int, mapped_column(BigInteger)]
"""A Discord id (64-bit snowflake)."""
created_at_ts = Annotated[
    datetime, mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
]
json_object = Annotated[
    dict[str, Any], mapped_column(JSONB, server_default=text("'{}'::jsonb"), nullable=False)
]
text_list = Annotated[
    list[str], mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"), nullable=False)
]


class Base(AsyncAttrs, DeclarativeBase):
    """Declarative base of every table, with the constraint naming convention alembic needs."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True), str: Text}


class User(Base):
    """A Discord user who has talked to the bot, with their credit balance."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_non_negative"),)

    id: Mapped[bigint_pk]
    discord_id: Mapped[snowflake] = mapped_column(unique=True)
    settings: Mapped[json_object]
    banned: Mapped[bool] = mapped_column(server_default=text("false"))
    balance: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    created_at: Mapped[created_at_ts]
    updated_at: Mapped[created_at_ts]

    jobs: Mapped[list[Job]] = relationship(back_populates="user", lazy="raise")


class Guild(Base):
    """A Discord server and its policy (NSFW handling, banned words, quotas, grants)."""

    __tablename__ = "guilds"
    __table_args__ = (
        CheckConstraint("max_running >= 0 AND max_queued >= 0", name="quotas_non_negative"),
        CheckConstraint("daily_grant >= 0 AND monthly_grant >= 0", name="grants_non_negative"),
    )

    id: Mapped[bigint_pk]
    discord_id: Mapped[snowflake] = mapped_column(unique=True)
    nsfw_policy: Mapped[NsfwPolicy] = mapped_column(
        _pg_enum(NsfwPolicy, "nsfw_policy"), server_default=NsfwPolicy.SPOILER.value
    )
    banned_words: Mapped[text_list]
    max_running: Mapped[int] = mapped_column(Integer, server_default=text("3"))
    max_queued: Mapped[int] = mapped_column(Integer, server_default=text("10"))
    gallery_enabled: Mapped[bool] = mapped_column(server_default=text("true"))
    relax_allowed: Mapped[bool] = mapped_column(server_default=text("true"))
    allowed_models: Mapped[text_list]
    """Model names members may use; empty means every configured model."""
    role_quotas: Mapped[json_object]
    """``{"<role id>": {"max_running": n, "max_queued": n}}``; the most generous role wins."""
    daily_grant: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    monthly_grant: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[created_at_ts]
    updated_at: Mapped[created_at_ts]


class CreditLedger(Base):
    """One append-only row per credit movement; a trigger refuses UPDATE and DELETE."""

    __tablename__ = "credit_ledger"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("kind = 'grant' OR job_id IS NOT NULL", name="job_movement_has_job"),
        # At most one hold, one capture and one release per job ...
        Index(
            "uq_credit_ledger_job_id_kind",
            "job_id",
            "kind",
            unique=True,
            postgresql_where=text("job_id IS NOT NULL"),
        ),
        # ... and never both a capture and a release: a job's hold is settled exactly once.
        Index(
            "uq_credit_ledger_job_id_settlement",
            "job_id",
            unique=True,
            postgresql_where=text("kind IN ('capture', 'release')"),
        ),
        Index("ix_credit_ledger_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[bigint_pk]
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    kind: Mapped[LedgerKind] = mapped_column(_pg_enum(LedgerKind, "ledger_kind"))
    amount: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), ForeignKey("jobs.id"))
    idempotency_key: Mapped[str | None] = mapped_column(unique=True)
    """Set on grants that must happen once (e.g. ``daily:<guild>:<date>``)."""
    created_at: Mapped[created_at_ts]


class Job(Base):
    """One request to render: from ``/imagine`` or a button on an earlier result."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        CheckConstraint("cost >= 0", name="cost_non_negative"),
        CheckConstraint("parent_index IS NULL OR parent_index >= 0", name="parent_index_non_negative"),
        Index("ix_jobs_prompt_tsv", "prompt_tsv", postgresql_using="gin"),
        Index("ix_jobs_user_id_status", "user_id", "status"),
        # Fair share counts the jobs each member started lately (db.repositories.queue).
        Index("ix_jobs_user_id_started_at", "user_id", "started_at"),
        Index("ix_jobs_status_queued_at", "status", "queued_at"),
        Index("ix_jobs_parent_id", "parent_id"),
        # A worker's look for queued jobs its pipeline call can render too (core.batching).
        Index(
            "ix_jobs_batch_key",
            "model",
            "lane",
            "batch_key",
            "queued_at",
            postgresql_where=text("status = 'queued' AND batch_key IS NOT NULL"),
        ),
        # The bot's sweep for ended jobs whose result was never posted.
        Index(
            "ix_jobs_undelivered",
            "finished_at",
            postgresql_where=text("result_message_id IS NULL AND status IN ('done', 'failed')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, default=uuid.uuid4, server_default=func.gen_random_uuid()
    )
    kind: Mapped[JobKind] = mapped_column(_pg_enum(JobKind, "job_kind"))
    variant: Mapped[str | None]
    """e.g. ``subtle``/``strong`` (variation), ``1.5``/``2``/``square`` (zoom), ``left`` (pan)."""
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="SET NULL")
    )
    parent_index: Mapped[int | None] = mapped_column(SmallInteger)
    """Which image of the parent's grid this job starts from (0-3)."""
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    guild_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("guilds.id"))
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    interaction_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    """The Discord interaction that asked for this job: the idempotency key."""
    interaction_token: Mapped[str | None]
    interaction_created_at: Mapped[datetime | None]
    """When the interaction token was issued; it can post follow-ups for 15 minutes."""
    prompt: Mapped[str]
    negative_prompt: Mapped[str] = mapped_column(server_default=text("''"))
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    """``JobSpec.to_dict()``."""
    model: Mapped[str]
    seed: Mapped[int] = mapped_column(BigInteger)
    lane: Mapped[Lane] = mapped_column(_pg_enum(Lane, "lane"))
    status: Mapped[JobStatus] = mapped_column(
        _pg_enum(JobStatus, "job_status"), server_default=JobStatus.QUEUED.value
    )
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    created_at: Mapped[created_at_ts]
    queued_at: Mapped[created_at_ts]
    """Last time the job entered ``queued`` (creation or a retry); the reconciler's clock."""
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    cost: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    error: Mapped[str | None]
    grid_storage_key: Mapped[str | None]
    result_channel_id: Mapped[int | None] = mapped_column(BigInteger)
    result_message_id: Mapped[int | None] = mapped_column(BigInteger)
    private: Mapped[bool] = mapped_column(server_default=text("false"))
    cancel_requested_at: Mapped[datetime | None]
    """When the owner asked this running job to stop (it stops at its next step)."""
    batch_key: Mapped[str | None]
    """Jobs of one model, lane and key may render in one pipeline call (:func:`core.batching.batch_key`);
    None: it renders alone."""
    refunded: Mapped[int | None]
    """Credits given back by a job cancelled while running (the unrendered share)."""
    prompts: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    """A done describe job's prompts, best first (:mod:`core.captioners`); None for other kinds."""
    prompt_tsv: Mapped[str] = mapped_column(
        TSVECTOR, Computed("to_tsvector('english'::regconfig, prompt)", persisted=True), deferred=True
    )

    user: Mapped[User] = relationship(back_populates="jobs", lazy="raise")
    images: Mapped[list[Image]] = relationship(
        back_populates="job", lazy="raise", order_by="Image.index", cascade="all, delete-orphan"
    )

    @hybrid_property
    def has_result(self) -> bool:
        """Whether the job ended with something to post: done, failed, or stopped by its owner
        while it rendered (a job cancelled while queued is answered by the cancel itself)."""
        return self.status in (JobStatus.DONE, JobStatus.FAILED) or (
            self.status == JobStatus.CANCELLED and self.cancel_requested_at is not None
        )

    @has_result.inplace.expression
    @classmethod
    def _has_result_expression(cls) -> ColumnElement[bool]:
        return or_(
            cls.status.in_([JobStatus.DONE, JobStatus.FAILED]),
            and_(cls.status == JobStatus.CANCELLED, cls.cancel_requested_at.is_not(None)),
        )


class Image(Base):
    """One rendered image of a job (the grid is stored on the job)."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("job_id", "index"),
        CheckConstraint('"index" >= 0', name="index_non_negative"),
        CheckConstraint("width > 0 AND height > 0", name="size_positive"),
        # The invariant "NSFW-flagged images never reach the public gallery", in the database.
        CheckConstraint("NOT (public AND nsfw)", name="nsfw_never_public"),
        # Newest first, and keyset pages of it: ``(created_at, id) < (...)`` (migration 0007).
        Index("ix_images_gallery_recent", "created_at", "id", postgresql_where=text("public")),
        # Most liked first, newest first among equals (scanned backwards): the gallery's "top".
        Index("ix_images_gallery_top", "likes", "created_at", "id", postgresql_where=text("public")),
    )

    id: Mapped[bigint_pk]
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(SmallInteger)
    seed: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str]
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str]
    nsfw_score: Mapped[float | None] = mapped_column(Float)
    nsfw: Mapped[bool] = mapped_column(server_default=text("false"))
    public: Mapped[bool] = mapped_column(server_default=text("false"))
    likes: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    """Gallery likes, kept by a trigger on ``gallery_likes`` (migration 0006)."""
    thumbnail_key: Mapped[str | None]
    """A WebP thumbnail in the store (:mod:`core.thumbnails`); None for images stored before."""
    created_at: Mapped[created_at_ts]

    job: Mapped[Job] = relationship(back_populates="images", lazy="raise")


class GalleryLike(Base):
    """A user's like of a gallery image (one per user and image)."""

    __tablename__ = "gallery_likes"

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    image_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[created_at_ts]


class Favorite(Base):
    """An image a user saved for themselves (private, unlike a like)."""

    __tablename__ = "favorites"

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    image_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[created_at_ts]


class ModerationEvent(Base):
    """Something moderation refused or flagged (banned word, NSFW image, ...)."""

    __tablename__ = "moderation_events"

    id: Mapped[bigint_pk]
    user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"), index=True)
    guild_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("guilds.id"), index=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="SET NULL")
    )
    kind: Mapped[str]
    """e.g. ``banned_word``, ``minor_filter``, ``nsfw_image``."""
    detail: Mapped[json_object]
    created_at: Mapped[created_at_ts]


class Outbox(Base):
    """A task to publish once the transaction that wrote it has committed."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unpublished", "created_at", postgresql_where=text("published_at IS NULL")),
    )

    id: Mapped[bigint_pk]
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"))
    task_name: Mapped[str]
    created_at: Mapped[created_at_ts]
    published_at: Mapped[datetime | None]


class GuildBan(Base):
    """A user a server's admins banned from making images in that server.

    Per server, unlike ``users.banned`` (the operator's ban, everywhere): one server's
    admins cannot lock a member out of other servers.
    """

    __tablename__ = "guild_bans"

    guild_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    reason: Mapped[str | None]
    banned_by: Mapped[int | None] = mapped_column(BigInteger)
    """The Discord id of the admin who banned the user."""
    created_at: Mapped[created_at_ts]


class GalleryQuery(Base):
    """A gallery search or filter text, so paging buttons carry its id instead of the text."""

    __tablename__ = "gallery_queries"
    __table_args__ = (UniqueConstraint("mode", "text"),)

    id: Mapped[bigint_pk]
    mode: Mapped[str]
    """``search`` (full-text words) or ``model`` (a model name)."""
    text: Mapped[str]
    created_at: Mapped[created_at_ts]


class PromptWord(Base):
    """A word of some published prompt, once: where a misspelt gallery search finds the words
    it meant (through a trigram index where pg_trgm exists). Kept by a trigger on images
    (migration 0007)."""

    __tablename__ = "prompt_words"

    word: Mapped[str] = mapped_column(Text, primary_key=True)


class Mask(Base):
    """A mask a member painted in the web gallery's editor (white: repaint), kept as a PNG
    until the job that uses it is done with it; a job names it by id (``JobSpec.mask_id``)."""

    __tablename__ = "masks"

    id: Mapped[bigint_pk]
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    png: Mapped[bytes] = mapped_column(BYTEA)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[created_at_ts]


class WebRequest(Base):
    """A job the web gallery asks the bot to queue (the bot owns every submission: checks,
    credits, moderation): Vary (Region) with a drawn mask, from a signed editor link (one
    request per link)."""

    __tablename__ = "web_requests"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'queued', 'refused')", name="status_known"),
        Index("ix_web_requests_pending", "created_at", postgresql_where=text("status = 'pending'")),
    )

    id: Mapped[bigint_pk]
    link_id: Mapped[str] = mapped_column(unique=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    guild_discord_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    source_job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"))
    image_index: Mapped[int] = mapped_column(SmallInteger)
    prompt: Mapped[str]
    mask_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("masks.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(server_default=text("'pending'"))
    message: Mapped[str | None]
    """What the bot answered (a refusal's reason, or where the result will appear)."""
    job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[created_at_ts]
    handled_at: Mapped[datetime | None]


class TrainedLora(Base):
    """A LoRA a member trains with ``/train`` (migration 0011): the request, then the file.

    ``status`` is ``training`` until the worker stores the file (``ready``), or ``failed``
    when its job fails or is cancelled (a trigger on ``jobs`` says so, whatever ended it).
    Name and trigger are unique per server among the LoRAs not failed; private to its
    trainer unless ``shared`` with the server by an admin.
    """

    __tablename__ = "trained_loras"
    __table_args__ = (
        CheckConstraint("status IN ('training', 'ready', 'failed')", name="status_known"),
        CheckConstraint("status <> 'ready' OR (storage_key IS NOT NULL AND sha256 IS NOT NULL)",
                        name="ready_has_file"),
        Index("uq_trained_loras_guild_name", text("coalesce(guild_id, 0)"), text("lower(name)"), unique=True,
              postgresql_where=text("status <> 'failed'")),
        Index("uq_trained_loras_guild_trigger", text("coalesce(guild_id, 0)"), text("lower(trigger)"), unique=True,
              postgresql_where=text("status <> 'failed'")),
        Index("ix_trained_loras_user_id", "user_id"),
    )

    id: Mapped[bigint_pk]
    name: Mapped[str]
    trigger: Mapped[str]
    kind: Mapped[str]
    """:class:`core.training.TrainingKind`."""
    model: Mapped[str]
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    guild_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="SET NULL"), unique=True
    )
    request: Mapped[dict[str, Any]] = mapped_column(JSONB)
    """:class:`core.training.TrainingRequest` (kind, trigger, steps, seed; the pictures are
    ``training_pictures`` rows)."""
    status: Mapped[str] = mapped_column(server_default=text("'training'"))
    storage_key: Mapped[str | None]
    sha256: Mapped[str | None]
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    shared: Mapped[bool] = mapped_column(server_default=text("false"))
    created_at: Mapped[created_at_ts]
    ready_at: Mapped[datetime | None]


class TrainingPicture(Base):
    """One picture of a training request, as the bot normalised it (WebP, at most
    :data:`core.training.MAX_TRAIN_SIDE` a side), in order, with its caption as given."""

    __tablename__ = "training_pictures"
    __table_args__ = (UniqueConstraint("lora_id", "index"),)

    id: Mapped[bigint_pk]
    lora_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("trained_loras.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(SmallInteger)
    data: Mapped[bytes] = mapped_column(BYTEA)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    caption: Mapped[str] = mapped_column(server_default=text("''"))


class StoreDeletion(Base):
    """A file to remove from the image store (migration 0013): a deleted trained LoRA's file,
    queued by a trigger on ``trained_loras`` when no other row names it, purged by the
    workers' reconciler (:mod:`gpu_worker.purging`)."""

    __tablename__ = "store_deletions"
    __table_args__ = (
        Index("ix_store_deletions_pending", "requested_at", postgresql_where=text("purged_at IS NULL")),
    )

    storage_key: Mapped[str] = mapped_column(primary_key=True)
    sha256: Mapped[str | None]
    requested_at: Mapped[created_at_ts]
    purged_at: Mapped[datetime | None]
