"""Private and NSFW pictures never reach a page, a tile or a file served to someone who must
not see them: logged out, or logged in as another member. Their owner sees them (NSFW
blurred until they opt in)."""

from __future__ import annotations

import io

import httpx
from PIL import Image
from sqlalchemy import update

from core.spec import JobKind
from db import repositories as repo
from db.models import Guild
from tests.bot.conftest import next_id
from tests.web.conftest import Gallery, Web, set_private_mode

SECRETS = {
    "private": "zebracorn private moonbase",
    "nsfw": "zebracorn flagged portrait",
    "unpublished": "zebracorn unpublished sketch",
    "gallery off": "zebracorn quiet server",
    "private mode": "zebracorn shy member",
}


async def _world(gallery: Gallery) -> dict[str, int]:
    ids: dict[str, int] = {}
    ids["public"], parent = await gallery.picture("zebracorn public meadow", owner="bob")
    ids["private"], _ = await gallery.picture(
        SECRETS["private"], owner="bob", private=True, parent=parent, kind=JobKind.VARIATION
    )
    ids["nsfw"], _ = await gallery.picture(SECRETS["nsfw"], owner="bob", nsfw=True)
    ids["unpublished"], _ = await gallery.picture(SECRETS["unpublished"], owner="bob", public=False)
    quiet = await repo.upsert_guild(session=gallery.session, discord_id=next_id())
    await gallery.session.execute(update(Guild).where(Guild.id == quiet.id).values(gallery_enabled=False))
    ids["gallery off"], _ = await gallery.picture(SECRETS["gallery off"], owner="bob", guild=quiet)
    ids["private mode"], _ = await gallery.picture(SECRETS["private mode"], owner="carol")
    await set_private_mode(gallery.session, gallery.users["carol"])
    return ids


async def _pages(client: httpx.AsyncClient, gallery: Gallery, ids: dict[str, int]) -> str:
    """Every page a visitor can reach, concatenated."""
    urls = [
        "/",
        "/top?period=day",
        "/top?period=week",
        "/top?period=all",
        "/search?q=zebracorn",
        "/search?q=moonbase",
        "/search?q=zebracorn+flagged",
        "/search?q=a+secret+base+on+the+moon",
        f"/u/{gallery.users['bob'].discord_id}",
        f"/u/{gallery.users['carol'].discord_id}",
        f"/i/{ids['public']}",
        "/me",
    ]
    out = []
    for url in urls:
        response = await client.get(url)
        # /me sends a logged-out visitor to log in.
        assert response.status_code == 200 or (url == "/me" and response.status_code == 302), url
        out.append(response.text)
    return "\n".join(out)


async def _assert_hidden(client: httpx.AsyncClient, gallery: Gallery, ids: dict[str, int]) -> None:
    pages = await _pages(client, gallery, ids)
    assert "zebracorn public meadow" in pages
    for what, text in SECRETS.items():
        assert text not in pages, what
        image_id = ids[what]
        assert f'/i/{image_id}"' not in pages and f"/t/{image_id}.webp" not in pages, what
        for url in (f"/i/{image_id}", f"/t/{image_id}.webp", f"/f/{image_id}"):
            assert (await client.get(url)).status_code == 404, (what, url)
    # The public picture's lineage shows its private child as a lock, nothing of it.
    lineage = (await client.get(f"/i/{ids['public']}")).text
    assert "a step that is not public" in lineage


async def test_logged_out_visitors_never_see_private_or_nsfw_pictures(gallery: Gallery, web: Web) -> None:
    ids = await _world(gallery)
    await _assert_hidden(web.client(), gallery, ids)


async def test_another_member_never_sees_them_either(gallery: Gallery, web: Web) -> None:
    ids = await _world(gallery)
    alice = await web.logged_in("alice")
    if True:
        assert 'id="who">alice<' in (await alice.get("/")).text.replace("Alice", "alice")
        await _assert_hidden(alice, gallery, ids)
        # Not even by liking them: only gallery pictures can be liked.
        page = await alice.get(f"/i/{ids['public']}")
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        answer = await alice.post(
            f"/i/{ids['private']}/like",
            data={"csrf": csrf, "liked": "1"},
            headers={"Accept": "application/json"},
        )
        assert answer.status_code == 404
        assert await repo.count_likes(session=gallery.session, image_id=ids["private"]) == 0


async def test_the_owner_sees_their_own_and_nsfw_stays_blurred_until_they_opt_in(
    gallery: Gallery, web: Web
) -> None:
    ids = await _world(gallery)
    bob = await web.logged_in("bob")
    if True:
        mine = (await bob.get("/me")).text
        for what in ("private", "nsfw", "unpublished"):
            assert SECRETS[what] in mine, what
            assert (await bob.get(f"/i/{ids[what]}")).status_code == 200
        assert "only to you" in (await bob.get(f"/i/{ids['private']}")).text
        # NSFW: a blurred 256-pixel tile, and no full picture until opted in.
        tile = await bob.get(f"/t/{ids['nsfw']}.webp")
        assert tile.status_code == 200 and tile.headers["cache-control"].startswith("private")
        assert Image.open(io.BytesIO(tile.content)).size == (256, 256)
        assert (await bob.get(f"/f/{ids['nsfw']}")).status_code == 404
        csrf = mine.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        assert (await bob.post("/me/nsfw", data={"csrf": csrf, "show": "1"})).status_code == 303
        tile = await bob.get(f"/t/{ids['nsfw']}.webp")
        assert Image.open(io.BytesIO(tile.content)).size == (96, 64)
        assert (await bob.get(f"/f/{ids['nsfw']}")).status_code == 200
        # Without the CSRF token nothing changes.
        assert (await bob.post("/me/nsfw", data={"show": "0"})).status_code == 403
