"""Reading uploads from requests: the one path of every upload (the upload form, /api/predict, /api/explain).

A multipart file is spooled to a temporary file by Starlette and handed on as a file object; JSON rows are
handed on as parsed. The data itself is validated by the service (the CLI's own checks).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from ...data.errors import DataError
from .options import query_values

UNSUPPORTED_TYPE = ("send the profiles as multipart/form-data (a 'file' field holding a CSV or Parquet file) or as "
                    "application/json ({\"rows\": [...]}).")


@asynccontextmanager
async def multipart(request: Request) -> AsyncIterator[tuple[UploadFile | None, dict[str, Any]]]:
    """The multipart form's file and its plain fields (a repeated field: all its values); closed on exit. At
    most a few bodies are received at once (``ServedModels.reading``)."""
    async with request.app.state.models.reading():
        form = await request.form(max_files=1, max_fields=20)
    try:
        yield _file_and_fields(form)
    finally:
        await form.close()


def _file_and_fields(form: FormData) -> tuple[UploadFile | None, dict[str, Any]]:
    upload = None
    fields: dict[str, Any] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key == "file" or upload is None:
                upload = value
        elif key in fields:
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


async def with_profiles(request: Request, on_file: Callable[[Any, str | None, dict[str, Any]], Any],
                        on_rows: Callable[[Any, dict[str, Any]], Any]) -> Any:
    """A multipart file goes to ``on_file(handle, filename, options)``, JSON rows to ``on_rows(rows, options)``,
    both in the threadpool once the app's gate lets the request through (at most ``max_parallel`` at once;
    the others wait in the event loop, holding no thread). ``options`` are the request's query parameters,
    overridden by its other values (multipart form fields, or the JSON body's keys besides "rows")."""
    options = query_values(request.query_params)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        async with multipart(request) as (upload, fields):
            upload = require_file(upload)
            async with gate(request):
                return await run_in_threadpool(on_file, upload.file, upload.filename, {**options, **fields})
    if ctype == "application/json" or ctype.endswith("+json"):
        async with request.app.state.models.reading():
            body = await request.body()
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"the request body is not valid JSON ({exc}). Send {{\"rows\": [...]}}.",
                            source="request body") from None
        rows: Any = data.get("rows") if isinstance(data, dict) else data
        fields = {k: v for k, v in data.items() if k != "rows"} if isinstance(data, dict) else {}
        async with gate(request):
            return await run_in_threadpool(on_rows, rows, {**options, **fields})
    raise HTTPException(415, UNSUPPORTED_TYPE)


def gate(request: Request) -> Any:
    """The app's gate on parallel work (``web.services.registry.Gate``): ``async with gate(request): ...``."""
    return request.app.state.models.gate()
