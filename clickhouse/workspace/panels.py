"""What a workspace page draws: its panels, each one GET route of the query API.

A view function (one per page, in the module that owns the page's routes) returns ``list[PanelLink]``;
the page template lists them in a JSON script and ``workspace.js`` fetches each ``route`` with the
page's state and ``chart=1``. Invariant: a panel shows only what its route answers for that state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode


@dataclass(frozen=True, slots=True)
class PanelLink:
    id: str
    """Unique within its page, a valid HTML id (letters, digits, '-')."""
    title: str
    route: str
    """An API path, e.g. ``/v1/funnel/over-time``; it may carry its own fixed query (``?step=2``),
    which wins over the page state's parameter of the same name."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def route(path: str, **fixed: Any) -> str:
    """``path`` with the fixed parameters a panel always sends (empty ones left out), URL-encoded."""
    query = urlencode({name: value for name, value in fixed.items() if value not in ("", None)})
    return f"{path}?{query}" if query else path


PageState = Mapping[str, str]
"""A page's query parameters as the browser sent them (the GET form's fields)."""
