"""The web gallery: ``imaginarium web`` serves it (an ASGI app, Starlette + Jinja templates).

Server-rendered pages with a little JavaScript: recent, top (day / week / all), search (the
same full-text and by-meaning search as ``/gallery search``), image pages with the full
recipe and the picture's lineage, member pages, likes, "Log in with Discord" (OAuth2), a
member's own pictures, and the mask editor for Vary (Region). Like the bot it imports
``core`` and ``db`` only, never torch.
"""
