"""Background jobs: large uploads predicted by an in-process worker pool while the request answers at once.

The upload is copied into the data directory under the job's random id (``uploads/<id>.upload``, never a name
the user chose), a ``jobs`` row records its stage and progress, and the worker runs the same
``ModelService.predict_file`` as a direct upload; the row says 'done' (with the result id) only after the
result's files and row are committed. A server stopped mid-job leaves the row 'queued' or 'running': on the
next start those are marked failed with a plain message, and their upload copies deleted.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import time
import queue
import threading
from pathlib import Path
from typing import IO, Any

from ...data.errors import DataError
from .db import Database

log = logging.getLogger("moa_predict.web")

RESTARTED = "the server restarted while this job was waiting or running; upload the file again."
FAILED = "internal error: the job could not finish. Nothing was stored; upload the file again."


def upload_size(handle: IO[bytes]) -> int:
    """Bytes in a (seekable) uploaded file object; its position is left at the start."""
    handle.seek(0, 2)
    size = handle.tell()
    handle.seek(0)
    return size


class JobQueue:
    """Queued predictions of large uploads, persisted in the data directory's database."""

    def __init__(self, db: Database, models: Any, *, threshold_bytes: int, workers: int = 1) -> None:
        self.db = db
        self.models = models
        """The served models (``web.services.registry.ServedModels``): a job is predicted by the one it names."""
        self.threshold_bytes = threshold_bytes
        self.uploads = db.dir / "uploads"
        self.uploads.mkdir(exist_ok=True)
        self._queue: queue.Queue[tuple[str, Path, str | None, str | None] | None] = queue.Queue()
        self._fail_interrupted()
        # Daemon threads: stopping the server does not wait for a job; the next start marks it failed.
        self._workers = [threading.Thread(target=self._work, name=f"moa-job-{i}", daemon=True)
                         for i in range(workers)]
        for worker in self._workers:
            worker.start()

    def wants(self, handle: IO[bytes]) -> bool:
        """Whether this upload is large enough to be a background job."""
        return upload_size(handle) > self.threshold_bytes

    def submit(self, handle: IO[bytes], filename: str | None, source: str, model: str | None = None) -> str:
        """Copy the upload under a new job id, record the job (and the served model that will answer it: its
        name, None for the default), queue it; the job id."""
        job_id = secrets.token_urlsafe(16)
        path = self.uploads / f"{job_id}.upload"
        handle.seek(0)
        with open(path, "wb") as out:
            shutil.copyfileobj(handle, out, 1024 * 1024)
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO jobs (id, source, status, stage, progress, message, result_id, created, "
                         "updated, model) VALUES (?, ?, 'queued', 'waiting for a worker', 0, NULL, NULL, ?, ?, ?)",
                         (job_id, source, now, now, model))
        self._queue.put((job_id, path, filename, model))
        return job_id

    def get(self, job_id: str) -> dict[str, Any] | None:
        row = self.db.one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            return None
        return {"job_id": row["id"], "file": row["source"], "status": row["status"], "stage": row["stage"],
                "progress": round(float(row["progress"]), 3), "message": row["message"],
                "result_id": row["result_id"], "created": row["created"], "updated": row["updated"],
                "model": row["model"] or self.models.default.name}

    def shutdown(self) -> None:
        """Stop the workers once the queued jobs are done (tests; the server just exits)."""
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join()

    # -- the worker --------------------------------------------------------------------------------------
    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            self._run(*item)

    def _run(self, job_id: str, path: Path, filename: str | None, model: str | None) -> None:
        def progress(stage: str, fraction: float) -> None:
            self._update(job_id, status="running", stage=stage, progress=fraction)

        try:
            progress("starting", 0.05)
            with open(path, "rb") as handle:
                pred = self.models.get(model).predict_file(handle, filename, progress)
            self._update(job_id, status="done", stage="done", progress=1.0, result_id=pred.id)
        except DataError as exc:
            self._update(job_id, status="failed", stage="rejected", message=str(exc))
        except Exception as exc:  # noqa: BLE001 - the job fails, the server keeps running
            log.error("job %s failed: %s: %s", job_id, type(exc).__name__, exc)
            self._update(job_id, status="failed", stage="failed", message=FAILED)
        finally:
            path.unlink(missing_ok=True)

    def _update(self, job_id: str, **values: Any) -> None:
        values = {k: v for k, v in values.items() if k in ("status", "stage", "progress", "message", "result_id")}
        columns = ", ".join(f"{k} = ?" for k in values)
        self.db.execute(f"UPDATE jobs SET {columns}, updated = ? WHERE id = ?",
                        (*values.values(), time.time(), job_id))

    def _fail_interrupted(self) -> None:
        n = self.db.execute("UPDATE jobs SET status = 'failed', stage = 'interrupted', message = ?, updated = ? "
                            "WHERE status IN ('queued', 'running')", (RESTARTED, time.time()))
        if n:
            log.warning("%d job(s) interrupted by a restart were marked failed", n)
        for leftover in self.uploads.iterdir():
            leftover.unlink(missing_ok=True)

