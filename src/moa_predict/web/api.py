"""JSON API: ``POST /api/predict``, ``POST /api/explain``, ``GET /api/results/{id}/explain``,
``GET /api/model``, ``GET /api/health``.

Uploads go through the same reader and validation as ``moa predict`` (``load_features``); bad data is
answered 422 with ``DataError.to_dict()`` (error, file, row, line, column).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from .. import __version__
from ..data.errors import DataError
from .explain import ExplainOptions
from .service import ModelService

router = APIRouter(prefix="/api", tags=["api"])

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "what is wrong and what to do"},
        "file": {"type": ["string", "null"]},
        "row": {"type": ["integer", "null"], "description": "1-based data row (header not counted)"},
        "line": {"type": ["integer", "null"], "description": "line of a CSV file (header = line 1)"},
        "column": {"type": ["string", "null"]},
    },
}
ERRORS = {
    413: {"description": "upload over the size limit", "content": {"application/json": {"schema": ERROR_SCHEMA}}},
    415: {"description": "neither multipart/form-data nor JSON",
          "content": {"application/json": {"schema": ERROR_SCHEMA}}},
    422: {"description": "invalid data: the message names the row, the column and the problem",
          "content": {"application/json": {"schema": ERROR_SCHEMA}}},
}
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"],
                           "properties": {"file": {"type": "string", "format": "binary",
                                                   "description": "CSV or Parquet in the test_features layout"}}},
            },
            "application/json": {
                "schema": {"oneOf": [
                    {"type": "object", "required": ["rows"],
                     "properties": {"rows": {"type": "array", "items": {"type": "object"}}}},
                    {"type": "array", "items": {"type": "object"}},
                ]},
                "example": {"rows": [{"sig_id": "id_000644bb2", "cp_type": "trt_cp", "cp_time": 24,
                                      "cp_dose": "D1", "g-0": 1.06, "...": "g-1 ... g-771, c-0 ... c-99"}]},
            },
        },
    }
}


def service_of(request: Request) -> ModelService:
    return request.app.state.service


async def read_upload(request: Request) -> tuple[UploadFile | None, dict[str, Any]]:
    """The multipart form's file (spooled to a temporary file by Starlette) and its plain fields."""
    form = await request.form(max_files=1, max_fields=20)
    request.state.form = form  # closed by the caller
    upload = None
    fields: dict[str, Any] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key == "file" or upload is None:
                upload = value
        elif key in fields:  # a repeated field (e.g. sig_ids): all its values
            previous = fields[key]
            fields[key] = [*previous, str(value)] if isinstance(previous, list) else [previous, str(value)]
        else:
            fields[key] = str(value)
    return upload, fields


def require_file(upload: UploadFile | None) -> UploadFile:
    if upload is None or (not upload.filename and not upload.size):
        raise DataError("no file was uploaded. Send the profiles as a CSV or Parquet file in the form field "
                        "'file'.", source=None)
    return upload


UNSUPPORTED_TYPE = ("send the profiles as multipart/form-data (a 'file' field holding a CSV or Parquet file) or as "
                    "application/json ({\"rows\": [...]}).")


async def with_profiles(request: Request, on_file: Callable[[Any, str | None, dict[str, Any]], Any],
                        on_rows: Callable[[Any, dict[str, Any]], Any]) -> Any:
    """The one reading path of the API's uploads (/api/predict, /api/explain): a multipart file goes to
    ``on_file(handle, filename, form_fields)``, JSON rows to ``on_rows(rows, body_fields)``, both in the
    threadpool; each of them validates with the CLI's own checks (ModelService.read_file / read_rows).
    ``*_fields`` are the request's other values (multipart form fields, or the JSON body's keys besides
    "rows"), for options."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        try:
            upload, fields = await read_upload(request)
            upload = require_file(upload)
            return await run_in_threadpool(on_file, upload.file, upload.filename, fields)
        finally:
            form = getattr(request.state, "form", None)
            if form is not None:
                await form.close()
    if ctype == "application/json" or ctype.endswith("+json"):
        body = await request.body()
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"the request body is not valid JSON ({exc}). Send {{\"rows\": [...]}}.",
                            source="request body") from None
        rows: Any = data.get("rows") if isinstance(data, dict) else data
        fields = {k: v for k, v in data.items() if k != "rows"} if isinstance(data, dict) else {}
        return await run_in_threadpool(on_rows, rows, fields)
    raise HTTPException(415, UNSUPPORTED_TYPE)


def json_response(make: Callable[[], Any]) -> Callable[[], Response]:
    return lambda: Response(json.dumps(make(), allow_nan=False, separators=(",", ":")).encode(),
                            media_type="application/json")


@router.post("/predict", summary="Predict MoA probabilities for uploaded profiles",
             openapi_extra=PREDICT_BODY, responses=ERRORS)
async def predict(request: Request,
                  top: int = Query(10, ge=1, le=1000, description="how many top MoAs to list per profile"),
                  probabilities: bool = Query(True, description="include all probabilities (in 'targets' order)")
                  ) -> Response:
    """Send profiles in the LISH-MoA `test_features` layout, either as a **file** (multipart field `file`,
    CSV or Parquet) or as **JSON rows** (`{"rows": [{column: value, ...}, ...]}` or a bare list).

    Answers, per profile, the top-N MoAs and (unless `probabilities=false`) all probabilities aligned with
    `targets`; control rows (`ctl_vehicle`) get all zeros and an empty top list. The result is also kept
    on the server under `result_id` for the results page and the CSV/JSON downloads in `links`.
    A file with any invalid row or column is rejected whole (422) with the row, column and problem."""
    service = service_of(request)
    pred = await with_profiles(request, lambda handle, name, _: service.predict_file(handle, name),
                               lambda rows, _: service.predict_rows(rows))
    top = min(top, len(service.targets))
    return await run_in_threadpool(json_response(lambda: service.result_json(pred, top=top,
                                                                             probabilities=probabilities)))


def _option_values(request: Request, fields: dict[str, Any]) -> dict[str, Any]:
    """The explain options of a request: query parameters, then form fields / JSON keys (these win)."""
    values: dict[str, Any] = {}
    for key in request.query_params:
        items = request.query_params.getlist(key)
        values[key] = items if len(items) > 1 or key in LIST_OPTIONS else items[0]
    for key, value in fields.items():
        values[key] = value
    return values


LIST_OPTIONS = {"sig_ids", "sig_id", "moas", "moa"}


@router.post("/explain", summary="Explain predictions: attributions, similar reference profiles, OOD flags, "
                                 "compound calls", openapi_extra=PREDICT_BODY, responses=ERRORS)
async def explain(request: Request,
                  sig_ids: list[str] | None = Query(None, description=ExplainOptions.HELP["sig_ids"]),
                  moas: list[str] | None = Query(None, description=ExplainOptions.HELP["moas"]),
                  top_moas: int = Query(ExplainOptions.top_moas, ge=1, le=20,
                                        description=ExplainOptions.HELP["top_moas"]),
                  top_k: int = Query(ExplainOptions.top_k, ge=1, le=100, description=ExplainOptions.HELP["top_k"]),
                  neighbours: int = Query(ExplainOptions.neighbours, ge=0, le=50,
                                          description=ExplainOptions.HELP["neighbours"]),
                  max_attributed: int = Query(ExplainOptions.max_attributed, ge=0, le=500,
                                              description=ExplainOptions.HELP["max_attributed"]),
                  ) -> Response:
    """Send profiles exactly as for `POST /api/predict` (a multipart **file**, or **JSON rows**; the same
    validation, all or nothing, and the same error JSON). The options may also be given as multipart form
    fields or as JSON keys next to `rows` (`{"rows": [...], "sig_ids": ["id_1"], "top_moas": 2}`).

    Answers, per profile, its top MoAs with **attributions** (`explanations`: per MoA the probability, the
    baseline probability of a no-response profile, the completeness error, and the `top_k` features pushing
    it up or down: genes `g-`, cell lines `c-`, `cp_time`, `cp_dose`), its most similar **reference
    profiles** (`neighbours`: training sig_id, drug, known MoAs, similarity and its percentile), the MoAs
    **enriched** among them (hypergeometric p-value, drugs behind the hits) and an **out-of-distribution**
    flag (`ood`, with reasons); with a `drug_id`, `compound` or `compound_id` column, **compound calls**
    (one ranked MoA list per compound, agreement across its profiles). Models without attribution support
    (kNN, prior) answer `attributions.available = false` with the reason; the other parts still work.
    Nothing is stored."""
    service = service_of(request)
    targets = service.targets

    def on_file(handle: Any, name: str | None, fields: dict[str, Any]) -> Response:
        options = ExplainOptions.parse(_option_values(request, fields), targets)
        return json_response(lambda: service.explain_file(handle, name, options))()

    def on_rows(rows: Any, fields: dict[str, Any]) -> Response:
        options = ExplainOptions.parse(_option_values(request, fields), targets)
        return json_response(lambda: service.explain_rows(rows, options))()

    return await with_profiles(request, on_file, on_rows)


@router.get("/results/{result_id}/explain", summary="Explain a stored result's profiles", responses=ERRORS)
def explain_result(request: Request, result_id: str,
                   sig_ids: list[str] | None = Query(None, description=ExplainOptions.HELP["sig_ids"] +
                                                     "; also accepted as sig_id"),
                   moas: list[str] | None = Query(None, description=ExplainOptions.HELP["moas"]),
                   top_moas: int = Query(ExplainOptions.top_moas, ge=1, le=20,
                                         description=ExplainOptions.HELP["top_moas"]),
                   top_k: int = Query(ExplainOptions.top_k, ge=1, le=100, description=ExplainOptions.HELP["top_k"]),
                   neighbours: int = Query(ExplainOptions.neighbours, ge=0, le=50,
                                           description=ExplainOptions.HELP["neighbours"]),
                   max_attributed: int = Query(ExplainOptions.max_attributed, ge=0, le=500,
                                               description=ExplainOptions.HELP["max_attributed"]),
                   ) -> Response:
    """The `POST /api/explain` answer for profiles of a result kept on the server (`result_id` from
    `POST /api/predict` or the results page), e.g. `?sig_ids=id_000644bb2`. The results page draws its
    attribution charts from here."""
    service = service_of(request)
    pred = service.store.get(result_id)
    if pred is None:
        raise HTTPException(404, "this result is no longer available: results are kept in the server's memory "
                                 "for the most recent uploads only. Upload the file again.")
    options = ExplainOptions.parse(_option_values(request, {}), service.targets)
    return json_response(lambda: service.explain_result(pred, options))()


@router.get("/model", summary="The model card")
def model(request: Request) -> JSONResponse:
    """Which model is served, what it was trained on, its cross-validated score (`cv`, from the bundle) and
    the MoAs it predicts (`targets`: id 1-206, name, CV log loss of that MoA)."""
    return JSONResponse(service_of(request).card)


@router.get("/health", summary="Liveness and basic facts")
def health(request: Request) -> JSONResponse:
    service = service_of(request)
    return JSONResponse({
        "status": "ok",
        "version": __version__,
        "model": service.bundle.model_name,
        "targets": len(service.targets),
        "results_kept": len(service.store),
        "uptime_seconds": round(time.time() - service.started, 1),
        "max_upload_mb": service.max_upload_bytes / 1e6,
    })
