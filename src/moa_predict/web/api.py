"""JSON API: ``POST /api/predict``, ``GET /api/model``, ``GET /api/health``.

Uploads go through the same reader and validation as ``moa predict`` (``load_features``); bad data is
answered 422 with ``DataError.to_dict()`` (error, file, row, line, column).
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from .. import __version__
from ..data.errors import DataError
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


async def read_upload(request: Request) -> tuple[UploadFile | None, dict[str, str]]:
    """The multipart form's file (spooled to a temporary file by Starlette) and its plain fields."""
    form = await request.form(max_files=1, max_fields=20)
    request.state.form = form  # closed by the caller
    upload = None
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key == "file" or upload is None:
                upload = value
        else:
            fields[key] = str(value)
    return upload, fields


def require_file(upload: UploadFile | None) -> UploadFile:
    if upload is None or (not upload.filename and not upload.size):
        raise DataError("no file was uploaded. Send the profiles as a CSV or Parquet file in the form field "
                        "'file'.", source=None)
    return upload


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
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        try:
            upload, _ = await read_upload(request)
            upload = require_file(upload)
            pred = await run_in_threadpool(service.predict_file, upload.file, upload.filename)
        finally:
            form = getattr(request.state, "form", None)
            if form is not None:
                await form.close()
    elif ctype == "application/json" or ctype.endswith("+json"):
        body = await request.body()
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"the request body is not valid JSON ({exc}). Send {{\"rows\": [...]}}.",
                            source="request body") from None
        rows: Any = data.get("rows") if isinstance(data, dict) else data
        pred = await run_in_threadpool(service.predict_rows, rows)
    else:
        raise HTTPException(415, "send the profiles as multipart/form-data (a 'file' field holding a CSV or "
                                 "Parquet file) or as application/json ({\"rows\": [...]}).")
    top = min(top, len(service.targets))
    body_bytes = await run_in_threadpool(
        lambda: json.dumps(service.result_json(pred, top=top, probabilities=probabilities),
                           allow_nan=False, separators=(",", ":")).encode())
    return Response(body_bytes, media_type="application/json")


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
