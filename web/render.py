"""Pages from Jinja templates (autoescaped), with what every page shows: who is logged in,
the CSRF token for forms, whether login is offered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from web.auth import csrf_token, display_name, viewer_of

TEMPLATES = Path(__file__).resolve().parent / "templates"

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(
    request: Request, template: str, context: dict[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    viewer = viewer_of(request)
    page = _env.get_template(template).render(
        **context,
        viewer=viewer,
        viewer_name=display_name(request),
        csrf=csrf_token(request),
        login_enabled=request.app.state.config.login_enabled,
        path=request.url.path,
    )
    # Pages differ per viewer (their likes, their own pictures): never stored by shared caches.
    headers = {"Cache-Control": "private, no-cache", "X-Content-Type-Options": "nosniff"}
    return HTMLResponse(page, status_code=status_code, headers=headers)
