"""JSON API: ``POST /api/predict``, ``POST /api/explain``, ``GET /api/results/{id}/explain``,
``GET /api/jobs/{id}``, ``GET /api/model``, ``GET /api/models``, ``GET /api/health``.

Each route parses its request (options validated once, uploads read by ``web/core/uploads.py``), makes one call
into the service, and answers JSON. Uploads go through the same reader and validation as ``moa predict``;
bad data is answered 422 with ``DataError.to_dict()`` (error, file, row, line, column).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from ... import __version__
from ..core.deps import Jobs, Models, ResultService, Stored, explain_query_options, predict_options
from ..core.jsonbody import json_bytes
from ..core.options import MODEL_HELP, ExplainOptions, PredictOptions
from ..services.model_service import display_name
from ..core.uploads import with_profiles

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
                                                   "description": "CSV or Parquet in the test_features layout"},
                                          "model": {"type": "string", "description": MODEL_HELP}}},
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


GONE = {
    404: {"description": "no result has this id", "content": {"application/json": {"schema": ERROR_SCHEMA}}},
    410: {"description": "the result has expired (the server's retention policy)",
          "content": {"application/json": {"schema": ERROR_SCHEMA}}},
}
JOB_SCHEMA = {
    "type": "object",
    "required": ["job_id", "status", "stage", "progress", "links"],
    "properties": {
        "job_id": {"type": "string"}, "file": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
        "stage": {"type": "string"}, "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "message": {"type": ["string", "null"]}, "result_id": {"type": ["string", "null"]},
        "created": {"type": "number"}, "updated": {"type": "number"}, "links": {"type": "object"},
    },
}
PREDICT_RESPONSES = {
    202: {"description": "a large upload, queued as a background job: poll `links.job`",
          "content": {"application/json": {"schema": JOB_SCHEMA}}},
    **ERRORS,
}


def json_response(content: Any) -> Response:
    """Compact JSON (``web/core/jsonbody.py``)."""
    return Response(json_bytes(content), media_type="application/json")


@router.post("/predict", summary="Predict MoA probabilities for uploaded profiles",
             openapi_extra=PREDICT_BODY, responses=PREDICT_RESPONSES)
async def predict(request: Request, models: Models, jobs: Jobs,
                  options: Annotated[PredictOptions, Depends(predict_options)]) -> Response:
    """Send profiles in the LISH-MoA `test_features` layout, either as a **file** (multipart field `file`,
    CSV or Parquet) or as **JSON rows** (`{"rows": [{column: value, ...}, ...]}` or a bare list).

    Answers, per profile, the top-N MoAs (each with `predictable`: false for a MoA not predictable from this
    training data, answered by its training frequency) and (unless `probabilities=false`) all probabilities
    aligned with `targets`; control rows (`ctl_vehicle`) get all zeros and an empty top list.
    `simulated_training_data` is the simulator's marker when the model was trained on simulated profiles
    (null otherwise). The result is also kept on the server under `result_id` for the results page and the
    downloads in `links` (`top_csv`: one row per profile and MoA, `?n=` MoAs per profile).
    Each profile also gets its **MoA set** at `set_level` (`moa_set`: the MoAs that, on compounds the model has
    not seen, contained the stated share of true MoAs) or an `abstention` saying plainly why it has none
    ("no confident MoA": empty set; "unlike anything in the reference": out of distribution; controls); `sets`
    gives the level, the MEASURED held-out recall and the sentence, and with a `drug_id`, `compound` or
    `compound_id` column `sets.compounds`: per compound one pooled call (its profiles' mean logit, calibrated on
    held-out compounds), its set with each MoA's agreement across the compound's profiles, and its abstention.
    Models trained before sets existed answer `sets.available = false`.
    Each profile also gets its **call** at `call_precision` (default 0.8): `call.call` is its most probable MoA
    (or a MoA family) when calls that confident were right at least that often on compounds the model had not
    seen, with `estimated_precision` (measured on held-out compounds) and `sentence`; otherwise `call.call` is
    null and `call.reason` says why ("not confident enough", "unlike anything in the reference", "control").
    `calls` gives the level, the measured precision and coverage, and per compound its pooled call.
    Models trained without cross-validation answer `calls.available = false` with the reason.
    A file with any invalid row or column is rejected whole (422) with the row, column and problem.
    Files over the server's job threshold are queued instead: `202` with the job (`GET /api/jobs/{id}`
    says its progress, then the `result_id`).
    A server may serve several models (`GET /api/models`): `model` (a multipart form field, a query parameter
    or a JSON key next to `rows`) names the one to answer (default: the first); `model_id` in the answer
    names the one that did."""

    def answer(service: Any) -> Any:
        return lambda pred: json_response(service.result_json(pred, top=options.top,
                                                              probabilities=options.probabilities,
                                                              set_level=options.set_level,
                                                              call_precision=options.call_precision))

    def on_file(handle: Any, name: str | None, values: dict[str, Any]) -> Any:
        service = models.get(values.get("model"))
        if jobs.wants(handle):
            return jobs.submit(handle, name, display_name(name), service.name)
        return service.predict_file(handle, name, then=answer(service))

    def on_rows(rows: Any, values: dict[str, Any]) -> Any:
        service = models.get(values.get("model"))
        return service.predict_rows(rows, then=answer(service))

    out = await with_profiles(request, on_file, on_rows)
    if isinstance(out, str):  # a background job's id
        return JSONResponse(job_json(jobs.get(out), _root(request)), status_code=202,
                            headers={"Location": f"{_root(request)}/api/jobs/{out}"})
    return out


@router.post("/explain", summary="Explain predictions: attributions, similar reference profiles, OOD flags, "
                                 "compound calls", openapi_extra=PREDICT_BODY, responses=ERRORS)
async def explain(request: Request, models: Models) -> Response:
    """Send profiles exactly as for `POST /api/predict` (a multipart **file**, or **JSON rows**; the same
    validation, all or nothing, and the same error JSON). The options may also be given as multipart form
    fields or as JSON keys next to `rows` (`{"rows": [...], "sig_ids": ["id_1"], "top_moas": 2}`).

    Answers, per profile, its top MoAs with **attributions** (`explanations`: per MoA the probability, the
    baseline probability of a no-response profile at its dose and time, the completeness error and check, the
    `top_k` features pushing it up or down: genes `g-` and cell lines `c-`, each with `label`, e.g. `AARS1 (16)`
    (gene symbol and Entrez id) or `HEYA8 (ovary)` (cell line), and `info`; and `dose_time`: the probability at
    every dose and time), its most similar **reference
    profiles** (`neighbours`: training sig_id, drug, known MoAs, similarity and its percentile), the MoAs
    **enriched** among them (hypergeometric p-value, drugs behind the hits) and an **out-of-distribution**
    flag (`ood`, with reasons); with a `drug_id`, `compound` or `compound_id` column, **compound calls**
    (one ranked MoA list per compound, agreement across its profiles). Models without attribution support
    (kNN, prior) answer `attributions.available = false` with the reason; the other parts still work.
    `model` chooses the served model, as for `POST /api/predict`. `label_set=target` explains the model's
    protein-target model instead of its MoAs (`moas` then names targets, e.g. `HMGCR`; the answer's `label_set`
    says which). Nothing is stored."""

    def on_file(handle: Any, name: str | None, values: dict[str, Any]) -> Response:
        service = models.get(values.get("model"))
        options = ExplainOptions.parse(values, service.settings.explain, service.targets,
                                       service.bundle.label_sets)
        return json_response({**service.explain_file(handle, name, options), "model_id": service.name})

    def on_rows(rows: Any, values: dict[str, Any]) -> Response:
        service = models.get(values.get("model"))
        options = ExplainOptions.parse(values, service.settings.explain, service.targets,
                                       service.bundle.label_sets)
        return json_response({**service.explain_rows(rows, options), "model_id": service.name})

    return await with_profiles(request, on_file, on_rows)


@router.get("/results/{result_id}/explain", summary="Explain a stored result's profiles",
            responses={**ERRORS, **GONE})
def explain_result(pred: Stored, service: ResultService,
                   options: Annotated[ExplainOptions, Depends(explain_query_options)]) -> Response:
    """The `POST /api/explain` answer for profiles of a result kept on the server (`result_id` from
    `POST /api/predict` or the results page), e.g. `?sig_ids=id_000644bb2`, or
    `?sig_ids=...&label_set=target&moas=HMGCR` for the genes behind a protein-target call. The results page
    draws its attribution charts from here."""
    return json_response({**service.explain_result(pred, options), "model_id": service.name})


@router.get("/jobs/{job_id}", summary="A background job's progress",
            responses={200: {"content": {"application/json": {"schema": JOB_SCHEMA}}},
                       404: {"description": "no such job", "content": {"application/json": {"schema": ERROR_SCHEMA}}}})
def job(job_id: str, request: Request, jobs: Jobs) -> JSONResponse:
    """A large upload's job (from `POST /api/predict`'s `202`): `status` queued / running / done / failed,
    `stage`, `progress` (0-1), `message` (why it failed), and when done `result_id` and its `links`. A job
    interrupted by a server restart is `failed` with a message saying so. Poll every second or two."""
    found = jobs.get(job_id)
    if found is None:
        raise HTTPException(404, "no job has this id on this server (or the link is mistyped).")
    return JSONResponse(job_json(found, _root(request)))


def job_json(job: dict[str, Any], root: str = "") -> dict[str, Any]:
    """The job's row plus its links (the job page, and the result's once done)."""
    links = {"job": f"{root}/api/jobs/{job['job_id']}", "page": f"{root}/jobs/{job['job_id']}"}
    if job["result_id"]:
        base = f"{root}/results/{job['result_id']}"
        links.update(results_page=base, csv=f"{base}/predictions.csv", json=f"{base}/predictions.json")
    return {**job, "links": links}


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


@router.get("/model", summary="The model card", responses={422: ERRORS[422]})
def model(request: Request, models: Models) -> JSONResponse:
    """Which model is served, what it was trained on (`training_data.description`; `simulated_training_data`:
    the simulator's marker, null for measured data), its cross-validated score (`cv`, with `prior_score` and
    `field`: top-k accuracy, micro PR-AUC, macro ROC-AUC, retrieval mAP and log loss beside the prior's and a
    shuffled-label control's), its features (`feature_blocks`), and the MoAs it predicts (`targets`: id 1-206,
    name, CV log loss, `predictable`, and with a per-MoA skill report: training `drugs` and `positives`
    (profiles), `auc` and `ap` on held-out drugs beside the prior's and the shuffled control's, `gain` over the
    frequency-only baseline, `judgement`: predictable, not predictable or too few compounds to judge).
    `not_predictable` lists the MoAs the model answers with their training frequency, `too_few_to_judge` those
    of them with too few compounds (null when the bundle does not say). `?model=NAME`: another served model's
    card."""
    service = models.get(request.query_params.get("model"))
    return JSONResponse({**service.card, "model_id": service.name})


@router.get("/models", summary="The models this server answers with")
def served_models(models: Models) -> JSONResponse:
    """Each served model: `name` (what the `model` field of an upload takes), `default` (answers uploads that
    name none), `model`, `layout`, `n_targets`, `answers`, `trained_on`, `simulated_training_data`."""
    return JSONResponse({"default": models.default.name, "models": models.listing()})


@router.get("/health", summary="Liveness and basic facts")
async def health(request: Request) -> JSONResponse:
    """Answered in the event loop from values kept in memory: never waits for a thread, a lock or the
    database, however busy the server is."""
    models = request.app.state.models  # not a dependency: FastAPI runs plain ones in the threadpool, behind the work
    service = models.default
    return JSONResponse({
        "status": "ok",
        "version": __version__,
        "model": service.bundle.model_name,
        "models": models.names,
        "targets": len(service.targets),
        "results_kept": len(service.store),
        "uptime_seconds": round(time.time() - service.started, 1),
        "max_upload_mb": service.settings.max_upload_mb,
    })
