"""The web gallery's pages: browsing by keyset, top by period, search, image pages with their
lineage and jump link, likes, files and their cache headers, and logging in."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from core.spec import JobKind
from db.models import Image, Job
from tests.web.conftest import Gallery, Web


def _ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'class="tile[^"]*" data-image="(\d+)"', page)]


def _csrf(page: str) -> str:
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


async def test_recent_pages_older_and_newer_by_keyset(gallery: Gallery, web: Web, monkeypatch) -> None:
    from web import pages

    monkeypatch.setattr(pages, "PER_PAGE", 2)
    made = [(await gallery.picture(f"lantern number {n}", seed=n))[0] for n in range(5)]
    client = web.client()
    first = (await client.get("/")).text
    assert _ids(first) == made[::-1][:2] and 'id="newer"' not in first
    older = re.search(r'id="older" href="([^"]+)"', first)
    assert older is not None
    second = (await client.get(older.group(1).replace("&amp;", "&"))).text
    assert _ids(second) == made[::-1][2:4]
    newer = re.search(r'id="newer" href="([^"]+)"', second)
    assert newer is not None
    back = (await client.get(newer.group(1).replace("&amp;", "&"))).text
    assert _ids(back) == made[::-1][:2]


async def test_top_by_day_week_and_all_time(gallery: Gallery, web: Web) -> None:
    old, _ = await gallery.picture("an old favourite")
    new, _ = await gallery.picture("a new one")
    await gallery.session.execute(
        update(Image)
        .where(Image.id == old)
        .values(created_at=datetime.now(UTC) - timedelta(days=30), likes=5)
    )
    client = web.client()
    assert _ids((await client.get("/top?period=all")).text) == [old, new]
    assert _ids((await client.get("/top?period=week")).text) == [new]
    assert _ids((await client.get("/top?period=day")).text) == [new]
    assert _ids((await client.get("/top?period=decade")).text) == [new]  # unknown: this week


async def test_search_pages_and_typos(gallery: Gallery, web: Web) -> None:
    lighthouse, _ = await gallery.picture("a lighthouse at dusk")
    await gallery.picture("a bowl of ramen")
    client = web.client()
    assert _ids((await client.get("/search?q=lighthouse")).text) == [lighthouse]
    typo = (await client.get("/search?q=lighthuose")).text
    assert _ids(typo) == [lighthouse] and "showing “lighthouse”" in typo
    assert _ids((await client.get("/search?q=submarine")).text) == []
    assert (await client.get("/search?q=" + "x" * 5000)).status_code == 200
    assert (await client.get("/search?q=lighthouse&page=-3")).status_code == 200
    # A NUL no database takes is a space, not a server error.
    nul = await client.get("/search?q=light%00house%00")
    assert nul.status_code == 200 and "light house" in nul.text


async def test_image_page_recipe_jump_link_and_lineage(gallery: Gallery, web: Web) -> None:
    root, root_job = await gallery.picture("a red fox --ar 3:2", seed=11)
    child, child_job = await gallery.picture(
        "a red fox --ar 3:2", parent=root_job, kind=JobKind.UPSCALE, seed=12
    )
    grandchild, _ = await gallery.picture(
        "a red fox in snow", parent=child_job, kind=JobKind.VARIATION, seed=13
    )
    await gallery.session.execute(
        update(Job).where(Job.id == child_job).values(result_channel_id=555, result_message_id=777)
    )
    page = (await web.client().get(f"/i/{child}")).text
    assert 'id="recipe">a red fox --ar 3:2 --seed 12<' in page
    assert 'data-copy="a red fox --ar 3:2"' in page
    assert f"https://discord.com/channels/{gallery.guild.discord_id}/555/777" in page
    lineage = page.split('id="lineage"', 1)[1]
    # Parent first, this picture marked, its child below it.
    assert lineage.index(f"/i/{root}") < lineage.index(f"/i/{child}") < lineage.index(f"/i/{grandchild}")
    assert 'class="step current"' in lineage and "upscale" in lineage and "variation" in lineage
    assert (await web.client().get("/i/999999999")).status_code == 404
    assert (await web.client().get("/i/abc")).status_code == 404


async def test_likes_need_a_login_and_count_once(gallery: Gallery, web: Web) -> None:
    image, _ = await gallery.picture("a likeable owl")
    anonymous = web.client()
    assert (await anonymous.post(f"/i/{image}/like", data={"liked": "1"})).status_code == 403
    alice = await web.logged_in("alice")
    csrf = _csrf((await alice.get(f"/i/{image}")).text)
    for _ in range(2):
        answer = await alice.post(
            f"/i/{image}/like", data={"csrf": csrf, "liked": "1"}, headers={"Accept": "application/json"}
        )
        assert answer.json() == {"likes": 1, "liked": True}
    assert (await alice.post(f"/i/{image}/like", data={"csrf": "forged", "liked": "0"})).status_code == 403
    page = (await alice.get(f"/i/{image}")).text
    assert "♥ Liked" in page and '<span id="likes">1</span>' in page
    # A form post (no JavaScript) comes back to the page.
    answer = await alice.post(f"/i/{image}/like", data={"csrf": csrf, "liked": "0"})
    assert answer.status_code == 303 and answer.headers["location"] == f"/i/{image}"
    assert "♡ Like" in (await alice.get(f"/i/{image}")).text


async def test_files_have_cache_headers_and_revalidate(gallery: Gallery, web: Web) -> None:
    image, _ = await gallery.picture("a cached comet")
    client = web.client()
    thumb = await client.get(f"/t/{image}.webp")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert thumb.headers["cache-control"] == "public, max-age=300"
    again = await client.get(f"/t/{image}.webp", headers={"If-None-Match": thumb.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    full = await client.get(f"/f/{image}")
    assert full.status_code == 200 and full.content.startswith(b"\x89PNG")
    page = await client.get("/")
    assert page.headers["cache-control"] == "private, no-cache"


async def test_login_refuses_a_stale_state_and_a_declined_consent(web: Web) -> None:
    client = web.client()
    assert (await client.get("/auth/callback?code=abc&state=forged")).status_code == 400
    start = await client.get("/auth/login?next=https://evil.example/")
    assert start.status_code == 302
    from urllib.parse import parse_qs, urlsplit

    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    declined = await client.get(f"/auth/callback?error=access_denied&state={state}")
    assert declined.status_code == 400 and "declined" in declined.text
    # An open redirect is never followed: "next" must be a path here.
    alice = await web.logged_in("alice")
    assert "alice" in (await alice.get("/me")).text.lower()
    assert web.fake.oauth.state.exchanges[-1] == "ok"


async def test_my_loras_shows_each_lora_with_its_samples_to_its_trainer_alone(web: Web, gallery: Gallery) -> None:
    from db.repositories import trained_loras

    image_id, job_id = await gallery.picture("a photo of zorbl", owner="alice", private=True)
    alice = await gallery.user("alice", discord_id=web.fake.user("alice").id)
    row = await trained_loras.create_training(
        session=gallery.session, user_id=alice.id, guild_id=gallery.guild.id, name="toy", trigger="zorbl",
        kind="subject", model="tiny", request={}, job_id=job_id,
    )
    await trained_loras.mark_trained(session=gallery.session, job_id=job_id, storage_key="ab" * 32,
                                     sha256="ab" * 32, size_bytes=1)
    await gallery.session.commit()
    assert (await web.client().get("/me/loras")).status_code == 302  # logged out: to the login
    page = (await (await web.logged_in("alice")).get("/me/loras")).text
    assert f'id="lora-{row.id}"' in page and "--lora toy" in page and f'src="/t/{image_id}.webp"' in page
    other = (await (await web.logged_in("bob")).get("/me/loras")).text
    assert "toy" not in other and "/train" in other


async def test_hostile_urls_get_an_answer_never_a_server_error(gallery: Gallery, web: Web) -> None:
    await gallery.picture("a lighthouse")
    client = web.client()
    huge = "9" * 26  # beyond a bigint: Postgres would refuse it as a query argument
    for path in (f"/u/{huge}", "/u/-1", "/u/abc", f"/i/{huge}", "/i/-5", f"/t/{huge}.webp", f"/f/{huge}",
                 "/i/1%00", "/u/1%00"):
        assert (await client.get(path)).status_code == 404, path
    for path in (f"/?before={huge}", "/?before=abc", f"/?after=-{huge}", f"/search?q=a&page={huge}",
                 "/search?q=%ED%A0%80", "/top?period=%3Cscript%3E"):
        answer = await client.get(path)
        assert answer.status_code == 200 and "<script>" not in answer.text.split("</head>", 1)[-1], path
    assert (await client.post(f"/i/{huge}/like")).status_code == 403  # no session, no CSRF token


async def test_a_body_past_the_ceiling_is_refused_unread(gallery: Gallery, web: Web) -> None:
    import httpx
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import Response
    from starlette.routing import Route

    from web.limits import MAX_BODY_BYTES, BodyLimit

    client = web.client()
    big = b"x" * (MAX_BODY_BYTES + 1)
    # Declared too large: refused from the header, on every route.
    assert (await client.post("/draw/token", content=big)).status_code == 413
    assert (await client.post("/me/nsfw", content=b"csrf=1", headers={"content-length": "99999999999"})).status_code == 413
    # A form of ordinary size still goes through (refused for its CSRF token, not its size).
    assert (await client.post("/auth/logout", data={"csrf": "x"})).status_code == 303

    # Sent in chunks with no length: refused once the count passes the ceiling, the rest unread.
    async def echo(request):  # type: ignore[no-untyped-def]
        return Response(str(len(await request.body())))

    app = Starlette(routes=[Route("/", echo, methods=["POST"])], middleware=[Middleware(BodyLimit, max_bytes=1000)])
    sent = 0

    async def chunks():  # type: ignore[no-untyped-def]
        nonlocal sent
        for _ in range(100):
            sent += 300
            yield b"y" * 300

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as small:
        assert (await small.post("/", content=chunks())).status_code == 413
        assert sent <= 1500
        assert (await small.post("/", content=b"z" * 1000)).text == "1000"
