"""The editing demo page and the browser tracker, served by the collector itself.

Same origin as the API, so the page needs no CORS allowance; the tracker is cacheable by any CDN.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

STATIC = Path(__file__).resolve().parent.parent / "static"


def router(write_key: str) -> APIRouter:
    page = (STATIC / "demo.html").read_text().replace("__WRITE_KEY__", html.escape(write_key, quote=True))
    tracker = (STATIC / "tracker.js").read_bytes()
    script = (STATIC / "demo.js").read_bytes()
    routes = APIRouter(tags=["demo"])

    @routes.get("/demo", include_in_schema=False)
    async def demo_page() -> HTMLResponse:
        return HTMLResponse(page)

    @routes.get("/tracker.js", summary="The browser tracker (no dependencies)")
    async def tracker_js() -> Response:
        return Response(tracker, media_type="text/javascript", headers={"Cache-Control": "public, max-age=300"})

    @routes.get("/demo.js", include_in_schema=False)
    async def demo_js() -> Response:
        return Response(script, media_type="text/javascript")

    return routes
