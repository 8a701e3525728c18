"""Single pictures for one viewer: may they see it, its lineage, their own pictures.

The web gallery shows a picture to anyone when it is in a gallery (the rules of
:func:`db.repositories.gallery.in_gallery`, over every server whose gallery is on), and to its
owner always: their private, unpublished and NSFW-flagged pictures included (NSFW ones
blurred unless they opted in, which the web decides). Nobody else ever gets a row of a
picture that is not in a gallery, so a page built from these functions cannot leak one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, and_, false, or_, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.models import Image, Job, JobStatus
from db.repositories.gallery import GalleryRow, in_gallery, joined, row_columns

LINEAGE_DEPTH = 12
"""How many generations up and down a lineage follows."""
LINEAGE_NODES = 200


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: nobody (logged out) or a member (our user id and Discord id)."""

    user_id: int | None = None
    discord_id: int | None = None

    @property
    def anonymous(self) -> bool:
        return self.user_id is None


def _for(stmt: Select[Any], viewer: Viewer) -> Select[Any]:
    """Rows of :func:`joined` the viewer may see: in some gallery, or their own."""
    mine: ColumnElement[bool] = false() if viewer.user_id is None else Job.user_id == viewer.user_id
    return stmt.where(or_(mine, and_(*in_gallery(None))))


async def picture(*, session: AsyncSession, image_id: int, viewer: Viewer) -> GalleryRow | None:
    """The image with its job and owner, if ``viewer`` may see it."""
    stmt = _for(joined(row_columns(viewer.user_id)), viewer).where(Image.id == image_id)
    row = (await session.execute(stmt)).first()
    return GalleryRow(*row) if row is not None else None


async def own_pictures(
    *, session: AsyncSession, viewer: Viewer, limit: int, before_id: int | None = None
) -> tuple[list[GalleryRow], bool]:
    """The viewer's own pictures of done jobs, newest first (private and NSFW ones too)."""
    if viewer.user_id is None:
        return [], False
    stmt = joined(row_columns(viewer.user_id)).where(
        Job.user_id == viewer.user_id, Job.status == JobStatus.DONE
    )
    if before_id is not None:
        pinned = aliased(Image)
        at = [
            select(getattr(pinned, n)).where(pinned.id == before_id).scalar_subquery()
            for n in ("created_at", "id")
        ]
        stmt = stmt.where(tuple_(Image.created_at, Image.id) < tuple_(*at))
    stmt = stmt.order_by(Image.created_at.desc(), Image.id.desc()).limit(limit + 1)
    rows = [GalleryRow(*row) for row in (await session.execute(stmt)).all()]
    return rows[:limit], len(rows) > limit


@dataclass
class LineageNode:
    """One job of a creation's family tree (imagine → pick → upscale → vary …)."""

    job_id: uuid.UUID
    kind: str
    variant: str | None
    parent_index: int | None
    prompt: str
    created_at: datetime
    image_id: int | None
    """A picture of it the viewer may see (the first); None when there is none to show."""
    visible: bool
    """False: a step the viewer may not see (shown as a lock, its details left out)."""
    children: list[LineageNode] = field(default_factory=list)


async def lineage(*, session: AsyncSession, job_id: uuid.UUID, viewer: Viewer) -> LineageNode | None:
    """The family tree of a job: from its first ancestor down to every descendant (up to
    :data:`LINEAGE_DEPTH` generations each way, :data:`LINEAGE_NODES` jobs). Steps the
    viewer may not see are leaves with their details left out."""
    ancestors = await session.execute(
        text(
            "WITH RECURSIVE up(id, parent_id, depth) AS ("
            " SELECT id, parent_id, 0 FROM jobs WHERE id = :job"
            " UNION ALL SELECT j.id, j.parent_id, up.depth + 1 FROM jobs j JOIN up ON j.id = up.parent_id"
            " WHERE up.depth < :depth) SELECT id FROM up ORDER BY depth DESC LIMIT 1"
        ),
        {"job": job_id, "depth": LINEAGE_DEPTH},
    )
    root = ancestors.scalar()
    if root is None:
        return None
    family = await session.execute(
        text(
            "WITH RECURSIVE down(id, depth) AS ("
            " SELECT CAST(:root AS uuid), 0"
            " UNION ALL SELECT j.id, down.depth + 1 FROM jobs j JOIN down ON j.parent_id = down.id"
            " WHERE down.depth < :depth) SELECT DISTINCT id FROM down LIMIT :nodes"
        ),
        {"root": root, "depth": 2 * LINEAGE_DEPTH, "nodes": LINEAGE_NODES},
    )
    ids = [row[0] for row in family.all()]
    jobs = {job.id: job for job in await session.scalars(select(Job).where(Job.id.in_(ids)))}
    shown = await _visible_images_of(session, list(jobs), viewer)
    nodes: dict[uuid.UUID, LineageNode] = {}
    for job in sorted(jobs.values(), key=lambda j: j.created_at):
        visible = job.id in shown
        nodes[job.id] = LineageNode(
            job_id=job.id,
            kind=job.kind.value,
            variant=job.variant if visible else None,
            parent_index=job.parent_index,
            prompt=job.prompt if visible else "",
            created_at=job.created_at,
            image_id=shown.get(job.id),
            visible=visible,
        )
    for job in sorted(jobs.values(), key=lambda j: j.created_at):
        parent = nodes.get(job.parent_id) if job.parent_id is not None else None
        if parent is not None and job.id != root:
            parent.children.append(nodes[job.id])
    _prune_hidden(nodes[root])
    return nodes[root]


def _prune_hidden(node: LineageNode) -> None:
    """A hidden step shows as a lock with nothing below it."""
    if not node.visible:
        node.children = []
        return
    for child in node.children:
        _prune_hidden(child)


async def _visible_images_of(
    session: AsyncSession, job_ids: list[uuid.UUID], viewer: Viewer
) -> dict[uuid.UUID, int]:
    """Job id → the first of its images the viewer may see."""
    if not job_ids:
        return {}
    stmt = _for(joined(cast("Select[Any]", select(Image.job_id, Image.id))), viewer)
    stmt = stmt.where(Image.job_id.in_(job_ids)).order_by(Image.job_id, Image.index)
    out: dict[uuid.UUID, int] = {}
    for job_id, image_id in (await session.execute(stmt)).all():
        out.setdefault(job_id, image_id)
    return out
