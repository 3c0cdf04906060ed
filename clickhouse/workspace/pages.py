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
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined

from clickhouse.access import LOGIN_PATH, PAGES_HOME, safe_next
from clickhouse.experiments.planning import metric_names
from clickhouse.workspace import views
from clickhouse.workspace.experiment_routes import experiment_list_panels, experiment_panels
from clickhouse.workspace.panels import PanelLink
from clickhouse.workspace.pipeline import pipeline_panels
from clickhouse.workspace.task_time_routes import task_time_panels
from funnelstream.experiments.errors import DefinitionError, UnknownExperimentError

router = APIRouter(include_in_schema=False)

NAV = (
    ("funnel", "Funnel", "/ui/funnel"),
    ("task-time", "Task time", "/ui/task-time"),
    ("experiments", "Experiments", "/ui/experiments"),
    ("pipeline", "Pipeline", "/ui/pipeline"),
)
_TEMPLATES = Environment(
    loader=PackageLoader("clickhouse.workspace", "templates"), autoescape=True, undefined=StrictUndefined
)

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


@router.get("/ui/static/{name}")
def static(name: str) -> Response:
    try:
        found = static_file(name)
    except KeyError:
        raise HTTPException(status_code=404, detail="no such file") from None
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}
    return Response(found.body, media_type=found.media_type, headers=headers)


def render(template: str, **context: Any) -> HTMLResponse:
    versions = {name: static_file(name).version for name in ("plotly.min.js", "workspace.js", "workspace.css")}
    html = _TEMPLATES.get_template(template).render(nav=NAV, versions=versions, **context)
    # A page is its state's view now; the browser keeps no copy of a read key's page.
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def page(request: Request, current: str, title: str, panels: list[PanelLink], template: str = "page.html",
         **context: Any) -> HTMLResponse:  # fmt: skip
    return render(
        template,
        current=current,
        title=title,
        panels=panels,
        panels_json=[panel.as_json() for panel in panels],
        live=request.query_params.get("live") == "1",
        state=request.query_params,
        with_range=context.pop("with_range", True),
        fields=[(name, label, request.query_params.get(name, "")) for name, label in context.pop("fields", [])],
        **context,
    )


@router.get("/ui")
def home() -> RedirectResponse:
    return RedirectResponse(PAGES_HOME, status_code=303)


@router.get("/ui/funnel")
def funnel_page(request: Request) -> HTMLResponse:
    state = request.query_params
    return page(
        request, "funnel", "Funnel", views.funnel_panels(state), "funnel.html", controls=views.funnel_controls(state)
    )


@router.get("/ui/task-time")
def task_time_page(request: Request) -> HTMLResponse:
    fields = [("experiment", "Experiment (its arms are the variants)"), ("input_id", "Image (input_id) to follow")]
    return page(request, "task-time", "Task time", task_time_panels(request.query_params), fields=fields)


@router.get("/ui/experiments")
def experiments_page(request: Request) -> HTMLResponse:
    try:
        defined = request.app.state.experiment_definitions().experiments
        problem = ""
    except DefinitionError as exc:
        defined, problem = [], str(exc)
    links = [(experiment.key, experiment.name or "", str(experiment.status)) for experiment in defined]
    return page(request, "experiments", "Experiments", experiment_list_panels(), experiments=links, problem=problem)


@router.get("/ui/experiments/{key}")
def experiment_page(request: Request, key: Annotated[str, Path(max_length=200)]) -> HTMLResponse:
    try:
        experiment = request.app.state.experiment_definitions().get(key)
    except UnknownExperimentError:
        raise HTTPException(status_code=404, detail="no such experiment") from None
    except DefinitionError:
        # The panels' routes say why; the page still lists them, with one lift panel for all metrics.
        return page(request, "experiments", f"Experiment {key}", experiment_panels(key))
    return page(request, "experiments", f"Experiment {key}", experiment_panels(key, metric_names(experiment)))


@router.get("/ui/pipeline")
def pipeline_page(request: Request) -> HTMLResponse:
    # Its panels look back from now, so the page's only control is live.
    return page(request, "pipeline", "Pipeline", pipeline_panels(), with_range=False)


@router.get(LOGIN_PATH)
def login_form(request: Request) -> HTMLResponse:
    """The form; its POST is answered by the read-key gate, which alone holds the keys and the throttle."""
    target = safe_next(request.query_params.get("next", ""))
    failed = request.query_params.get("failed") == "1"
    return render("login.html", title="Log in", current="", target=target, failed=failed)
