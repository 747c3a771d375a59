"""Server-rendered pages: home (upload + model card), results (paged), downloads, example file, API docs.

Each route parses its query (leniently: the view models clamp), calls the service or the explainer, and renders
a template; the results page adds the panels (web/pages/panels.py) of the profiles it shows.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse

from ...data.profiles import schema
from ...data.errors import DataError
from . import views
from ..core.deps import Explanations, Jobs, Models, PagePanels, ResultService, Settings, Stored, models_of, service_of
from ..core.jsonbody import json_bytes
from ..core.options import read_set_level
from .results_page import results_page
from ...data.builtin import example_for
from ..services.model_service import (EXAMPLE_FILENAME, EXAMPLE_ROWS, ModelService, display_name, example_csv,
                                      input_notes)
from ..core.store import REJECTION_POLICY, Prediction
from .templating import STATIC_DIR, templates
from ..core.uploads import gate, multipart, require_file

router = APIRouter(include_in_schema=False)

NO_STORE = {"Cache-Control": "no-store"}


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def _page(request: Request, name: str, status: int = 200, service: ModelService | None = None,
          **context) -> HTMLResponse:
    """Render a page about `service`'s model (default: the server's default model)."""
    service = service or service_of(request)
    models = models_of(request)
    context.setdefault("card", service.card)
    context.setdefault("model_id", service.name)
    context.setdefault("models", models.listing() if len(models) > 1 else [])
    context.setdefault("max_upload_mb", service.settings.max_upload_mb)
    context.setdefault("max_upload_bytes", service.settings.max_upload_bytes)
    context.setdefault("root", _root(request))
    return templates().TemplateResponse(request, name, context, status_code=status, headers=NO_STORE)


def _home(request: Request, status: int = 200, error: dict | None = None, n: int | None = None,
          service: ModelService | None = None) -> HTMLResponse:
    service = service or service_of(request)
    paging = service.settings.paging
    return _page(request, "home.html", status, service=service, error=error, n=paging.default_n if n is None else n,
                 n_choices=paging.n_choices,
                 example_rows=EXAMPLE_ROWS, policy=REJECTION_POLICY,
                 layout_example=(example_for(service.layout_name) or (None, None))[1],
                 columns=_column_help(service))


def _layout_column_help(layout: dict) -> list[dict]:
    """The columns an upload to a bundle of another layout needs: its id, compound, control and meta columns,
    then its feature blocks."""
    rows = []
    for col in layout["required_columns"]:
        roles = []
        if col in layout["id"]:
            roles.append("profile id" + (" (with " + " + ".join(c for c in layout["id"] if c != col) + ")"
                                         if len(layout["id"]) > 1 else ""))
        if col == layout["group"]:
            roles.append("compound (the same name on each of its profiles)")
        if layout["controls"].startswith(col + " ="):
            roles.append(f"controls: {layout['controls']}")
        if col == layout["plate"]:
            roles.append("plate" + (" (plate normalisation)" if not layout["normalisation"].startswith("none") else ""))
        if col in layout["meta"]:
            roles.append("meta input of the model")
        optional = "" if col in layout.get("upload_requires", layout["required_columns"]) else " (optional)"
        rows.append({"name": col, "what": ("; ".join(roles) or "named by the layout") + optional, "example": ""})
    for b in layout["blocks"]:
        rows.append({"name": b["columns"], "what": f"block {b['block']}: {b['count']:,} feature columns ({b['match']}; "
                     "numbers)", "example": ""})
    return rows


def _column_help(service: ModelService) -> list[dict]:
    """The columns an upload needs: the layout card's (another layout), or LISH-MoA's fixed columns."""
    if not service.layout.is_lish_moa:
        return _layout_column_help(service.card["layout"])
    feature_columns = service.bundle.feature_columns
    genes = [c for c in feature_columns if c.startswith("g-")]
    cells = [c for c in feature_columns if c.startswith("c-")]
    rows = [
        {"name": schema.SIG_ID, "what": "a unique id for each profile (any text)", "example": "id_000644bb2"},
        {"name": schema.CP_TYPE, "what": f"{schema.TREATED} (treated with a compound) or {schema.CONTROL} "
                                         "(vehicle control: predicted as no MoA)", "example": schema.TREATED},
        {"name": schema.CP_TIME, "what": "treatment duration in hours: " + ", ".join(map(str, schema.CP_TIMES)),
         "example": "24"},
        {"name": schema.CP_DOSE, "what": "dose: " + " or ".join(schema.CP_DOSES) + " (low or high)",
         "example": "D1"},
    ]
    if genes:
        rows.append({"name": f"{genes[0]} … {genes[-1]}", "what": f"{len(genes)} gene-expression values (L1000, "
                     "normalised; numbers, no blanks)", "example": "1.062"})
    if cells:
        rows.append({"name": f"{cells[0]} … {cells[-1]}", "what": f"{len(cells)} cell-viability values (numbers, "
                     "no blanks)", "example": "-0.6"})
    return rows


def _chosen(models: Models, name: str | None) -> ModelService:
    """The model a page's ``model`` parameter names (unknown or missing: the default; pages are lenient)."""
    return models.services.get((name or "").strip(), models.default)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, settings: Settings, models: Models, n: str | None = None,
         model: str | None = None) -> HTMLResponse:
    return _home(request, n=views.ResultsQuery.parse(settings.paging, n=n).n, service=_chosen(models, model))


@router.post("/predict", response_class=HTMLResponse)
async def upload(request: Request, models: Models, jobs: Jobs) -> Response:
    """The upload form: predict with the model chosen (the form's ``model`` field; default: the first), keep
    the result, redirect to its page (303, so reloading is harmless); a file over the job threshold becomes a
    background job and the redirect goes to the job's page."""
    service = models.default
    query = views.ResultsQuery.parse(service.settings.paging, n_targets=len(service.targets))
    try:
        async with multipart(request) as (upload_file, fields):
            service = models.get(fields.get("model"))
            query = views.ResultsQuery.parse(service.settings.paging, n=fields.get("n"), n_targets=len(service.targets))
            upload_file = require_file(upload_file)
            if await run_in_threadpool(jobs.wants, upload_file.file):
                job_id = await run_in_threadpool(jobs.submit, upload_file.file, upload_file.filename,
                                                 display_name(upload_file.filename), service.name)
                return RedirectResponse(query.url(f"{_root(request)}/jobs/{job_id}"), status_code=303)
            async with gate(request):
                pred = await run_in_threadpool(service.predict_file, upload_file.file, upload_file.filename)
    except DataError as exc:
        return _home(request, 422, error=_error_view(exc), n=query.n, service=service)
    except HTTPException as exc:  # malformed multipart body
        if exc.status_code != 400:
            raise
        return _home(request, 400, error={"message": f"the upload could not be read ({exc.detail}). Try again.",
                                          "details": []}, n=query.n, service=service)
    return RedirectResponse(query.url(f"{_root(request)}/results/{pred.id}"), status_code=303)


def _error_view(exc: DataError) -> dict:
    details = []
    if exc.source:
        details.append(("File", exc.source))
    if exc.row is not None:
        details.append(("Row", f"{exc.row:,} (line {exc.row + 1:,} of a CSV file, counting the header)"))
    if exc.column is not None:
        details.append(("Column", exc.column))
    return {"message": str(exc), "details": details, "located": exc.row is not None or exc.column is not None}


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, jobs: Jobs, n: str | None = None) -> Response:
    """A background job: its progress (the page reloads itself every 2 s), then its results page (303)."""
    found = jobs.get(job_id)
    if found is None:
        raise HTTPException(404, "no job has this id on this server (or the link is mistyped).")
    if found["status"] == "done":
        query = views.ResultsQuery.parse(service_of(request).settings.paging, n=n)
        return RedirectResponse(query.url(f"{_root(request)}/results/{found['result_id']}"), status_code=303)
    return _page(request, "job.html", service=_chosen(models_of(request), found["model"]), job=found,
                 refresh=found["status"] in ("queued", "running"), percent=round(100 * found["progress"]))


def _lenient_level(raw: str | None) -> float | None:
    """The page's set level, as lenient as its other parameters: anything unreadable means the default."""
    try:
        return read_set_level(raw)
    except DataError:
        return None


@router.get("/results/{result_id}", response_class=HTMLResponse)
def results(request: Request, pred: Stored, service: ResultService, panels: PagePanels, explanations: Explanations,
            n: str | None = None, page: str | None = None, per: str | None = None, q: str | None = None,
            show: str | None = None, set_level: str | None = None) -> HTMLResponse:
    query = views.ResultsQuery.parse(service.settings.paging, n=n, page=page, per=per, q=q, show=show,
                                     n_targets=len(service.targets))
    context = results_page(service, pred, query, f"{_root(request)}/results/{pred.id}", panels, explanations,
                           set_level=_lenient_level(set_level))
    return _page(request, "results.html", service=service, **context)


@router.get("/results/{result_id}/compounds", response_class=HTMLResponse)
def compounds_page(request: Request, pred: Stored, service: ResultService, q: str | None = None, page: str | None = None,
                   per: str | None = None, n: str | None = None) -> HTMLResponse:
    """Compound-level calls: one ranked MoA list per compound of the upload, with agreement across its
    profiles (doses x times)."""
    column, calls = service.explainer.compounds(pred)
    base = f"{_root(request)}/results/{pred.id}"
    view = views.compounds_view(calls, service.settings.paging, q=q, page=page, per=per, n=n, base=f"{base}/compounds",
                                not_predictable=frozenset(service.card["not_predictable"] or ()))
    pooled = service.calls(pred)  # each compound's profiles pooled into one call (trust.calls)
    compound_calls = {c["compound"]: c["call"] for c in (pooled.get("compounds") or [])}
    return _page(request, "compounds.html", service=service, pred=pred, summary=pred.summary(), base=base, column=column,
                 view=view, top_k=service.settings.explain.compound_top_k, confident=service.settings.confident,
                 compound_calls=compound_calls, calls=pooled, input_notes=input_notes(pred.features))


@router.get("/results/{result_id}/compounds.csv")
async def compounds_csv(pred: Stored, service: ResultService) -> Response:
    column, calls = await run_in_threadpool(service.explainer.compounds, pred)
    if calls is None:
        raise HTTPException(404, "this upload has no compound column (drug_id, compound, compound_id, or CMap's "
                                 "pert_iname / pert_id), so there "
                                 "are no compound-level calls.")
    top_k = service.settings.explain.compound_top_k
    frame = calls.rename(columns={"compound": column, "top_k_fraction": f"top{top_k}_confident_fraction"})
    frame["predictable"] = service.predictable_of(frame["moa"])
    data = frame.to_csv(index=False, float_format="%.6g").encode("utf-8")
    return Response(data, media_type="text/csv; charset=utf-8", headers={
        **NO_STORE, "Content-Disposition": f'attachment; filename="{_download_name(pred, "csv", "compounds")}"'})


def _download_name(pred: Prediction, suffix: str, what: str = "predictions") -> str:
    stem = Path(pred.source).stem if pred.source else "upload"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "upload"
    return f"{stem[:60]}_moa_{what}.{suffix}"


@router.get("/results/{result_id}/predictions.csv")
async def download_csv(pred: Stored, service: ResultService) -> Response:
    data = await run_in_threadpool(service.csv_bytes, pred)
    return Response(data, media_type="text/csv; charset=utf-8", headers={
        **NO_STORE, "Content-Disposition": f'attachment; filename="{_download_name(pred, "csv")}"'})


@router.get("/results/{result_id}/top.csv")
async def download_top_csv(pred: Stored, service: ResultService, explanations: Explanations,
                           n: str | None = None) -> Response:
    """The long "top N per profile" table (``ModelService.top_frame``); `n` is clamped like the page's."""
    top = views.ResultsQuery.parse(service.settings.paging, n=n, n_targets=len(service.targets)).n

    def make() -> bytes:
        ood = service.explainer_for(pred.features).ood_mask(pred) if explanations else None
        return service.top_frame(pred, top, ood).to_csv(index=False).encode("utf-8")

    data = await run_in_threadpool(make)
    return Response(data, media_type="text/csv; charset=utf-8", headers={
        **NO_STORE, "Content-Disposition": f'attachment; filename="{_download_name(pred, "csv", f"top{top}")}"'})


@router.get("/results/{result_id}/sets.csv")
async def download_sets_csv(pred: Stored, service: ResultService, set_level: str | None = None) -> Response:
    """Each profile's MoA set (``sig_id, moa_set, abstention``: MoAs joined by ``|``, as ``moa predict
    --sets-out`` writes them) at `set_level` (default: the bundle's)."""
    sets = await run_in_threadpool(service.sets, pred, _lenient_level(set_level))
    if not sets["available"]:
        return Response(sets["message"] + "\n", status_code=404, media_type="text/plain; charset=utf-8",
                        headers=NO_STORE)
    names = service.targets
    frame = pd.DataFrame({"sig_id": [str(s) for s in pred.sig_ids],
                          "moa_set": ["|".join(names[j] for j in members) for members in sets["moa_sets"]],
                          "abstention": [w or "" for w in sets["abstentions"]]})
    level = f"set{round(100 * sets['level'])}"
    return Response(frame.to_csv(index=False).encode("utf-8"), media_type="text/csv; charset=utf-8", headers={
        **NO_STORE, "Content-Disposition": f'attachment; filename="{_download_name(pred, "csv", level)}"'})


@router.get("/results/{result_id}/predictions.json")
async def download_json(pred: Stored, service: ResultService, top: int | None = None) -> Response:
    top = service.settings.top.default if top is None else top  # result_json clamps it to the MoAs there are
    data = await run_in_threadpool(lambda: json_bytes(service.result_json(pred, top=top)))
    return Response(data, media_type="application/json", headers={
        **NO_STORE, "Content-Disposition": f'attachment; filename="{_download_name(pred, "json")}"'})


@router.get("/example.csv")
async def example(models: Models, model: str | None = None) -> Response:
    service = _chosen(models, model)
    filename = EXAMPLE_FILENAME
    shipped = example_for(service.layout_name)
    if shipped is not None:
        data, filename = await run_in_threadpool(shipped[0].read_bytes), shipped[0].name
    elif service.layout.is_lish_moa:  # simulated LISH-MoA profiles, made here
        data = await run_in_threadpool(example_csv)
    else:
        raise HTTPException(404, f"no example file for a model of the {service.layout.name!r} layout: upload "
                                 "profiles of your own screen, with the columns listed on the home page.")
    return Response(data, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "public, max-age=3600"})


@lru_cache(maxsize=1)
def _plotly_js_path() -> Path | None:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def _plotly_js_text() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode("utf-8")


@router.get("/vendor/plotly.min.js")
def plotly_js() -> Response:
    """Plotly's JavaScript, from the installed plotly package (no CDN)."""
    headers = {"Cache-Control": "public, max-age=86400"}
    path = _plotly_js_path()
    if path is not None:
        return FileResponse(path, media_type="text/javascript; charset=utf-8", headers=headers)
    return Response(_plotly_js_text(), media_type="text/javascript; charset=utf-8", headers=headers)


@router.get("/favicon.ico")
def favicon() -> Response:
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> HTMLResponse:
    """The API reference, rendered here from the OpenAPI schema (FastAPI's own pages need a CDN)."""
    spec = request.app.openapi()
    endpoints = []
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            params = [{"name": p["name"], "in": p["in"], "required": p.get("required", False),
                       "type": _type_name(p.get("schema", {})), "default": p.get("schema", {}).get("default"),
                       "description": p.get("description") or p.get("schema", {}).get("description", "")}
                      for p in op.get("parameters", [])]
            body = list((op.get("requestBody") or {}).get("content", {}))
            responses = [(code, r.get("description", "")) for code, r in op.get("responses", {}).items()]
            endpoints.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                              "description": op.get("description", ""), "params": params, "body": body,
                              "responses": responses})
    return _page(request, "docs.html", endpoints=endpoints, spec_title=spec["info"]["title"],
                 spec_version=spec["info"]["version"], server=str(request.base_url).rstrip("/"))


def _type_name(schema_: dict) -> str:
    if "type" in schema_:
        return str(schema_["type"])
    for key in ("anyOf", "oneOf"):
        if key in schema_:
            return " | ".join(_type_name(s) for s in schema_[key])
    return ""
