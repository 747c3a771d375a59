"""``moa serve``: the web app and JSON API for one or more bundles (uvicorn; the bundles are loaded once)."""

from __future__ import annotations

import argparse

from ..data.builtin import L1000_REFERENCE
from ..data.errors import DataError


def cmd_serve(args: argparse.Namespace) -> None:
    from ..web.server import serve

    if args.max_upload_mb <= 0:
        raise DataError("--max-upload-mb must be a positive number of megabytes.")
    for flag in ("max_age_days", "max_store_mb", "job_threshold_mb"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            raise DataError(f"--{flag.replace('_', '-')} must be a positive number.")
    serve(args.bundle or [L1000_REFERENCE], host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
          data_dir=args.data_dir,
          token=args.token, max_age_days=args.max_age_days, max_store_mb=args.max_store_mb,
          job_threshold_mb=args.job_threshold_mb)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the web app and JSON API for a model bundle",
                       description="Serve the upload pages and the JSON API (/api/predict, /api/model, /api/health; "
                                   "reference at /docs) with uvicorn; the bundle is loaded once. Ctrl+C stops it.")
    p.add_argument("--bundle", action="append",
                   help="bundle directory written by 'moa train', or a built-in model by name; repeat it to serve "
                        "several models (the first is the default; the upload page and the API's 'model' field "
                        f"choose another). Default: the built-in {L1000_REFERENCE!r} (real L1000 signatures)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=200, help="largest accepted upload (default 200 MB)")
    p.add_argument("--data-dir", default=None,
                   help="where results and jobs are kept (SQLite + one file per result; default: the user's data "
                        "directory, e.g. ~/.local/share/moa-predict)")
    p.add_argument("--max-age-days", type=float, default=None, help="results expire after this (default 30 days)")
    p.add_argument("--max-store-mb", type=float, default=None,
                   help="stored results' total size in MB; the oldest expire beyond it (default 2048)")
    p.add_argument("--job-threshold-mb", type=float, default=None,
                   help="files larger than this are predicted in the background with a progress page (default 50)")
    p.add_argument("--token", default=None,
                   help="access token every page and API call needs (default: $MOA_TOKEN, else none; use one "
                        "whenever --host is not 127.0.0.1)")
    p.set_defaults(func=cmd_serve)
