"""The workspace's pages: server-rendered views of the query API under ``/ui``.

Owns the page routes, the static files they load (``plotly.min.js`` from the installed plotly
package, ``workspace.js``, ``workspace.css``) and the login form. Invariant: a page holds no number
of its own; it lists its panels and the browser fetches each from the API with the page's state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

router = APIRouter()

_MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    media_type: str
    version: str
    """A digest of the body: pages link ``name?v=version``, so a long cache never serves a stale file."""


@cache
def static_file(name: str) -> StaticFile:
    """One of the three files pages load; any other name is a KeyError."""
    if name == "plotly.min.js":
        body = resources.files("plotly").joinpath("package_data", "plotly.min.js").read_bytes()
    elif name in ("workspace.js", "workspace.css"):
        body = resources.files("clickhouse.workspace").joinpath("static", name).read_bytes()
    else:
        raise KeyError(name)
    media_type = _MEDIA_TYPES[name[name.rindex(".") :]]
    return StaticFile(body, media_type, hashlib.sha256(body).hexdigest()[:16])


@router.get("/ui/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    try:
        found = static_file(name)
    except KeyError:
        raise HTTPException(status_code=404, detail="no such file") from None
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}
    return Response(found.body, media_type=found.media_type, headers=headers)
