"""Every limit and option of the web app, in one object built once by ``create_app``.

Routers, the service and the middleware read these values from the app's :class:`WebSettings` (see
``web/core/deps.py``); no other module declares a default or a bound of its own.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...data.errors import DataError

MB = 1_000_000


class Bound(BaseModel):
    """A whole-number request option: its default and its allowed range (both ends included)."""

    model_config = ConfigDict(frozen=True)

    default: int
    low: int
    high: int

    def read(self, name: str, raw: Any) -> int:
        """`raw` (a text, a number, or a list whose last item counts) as a whole number in range; missing or
        blank gives the default. Anything else raises DataError (answered 422 with the usual error JSON)."""
        if isinstance(raw, (list, tuple)):
            raw = raw[-1] if raw else None
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return self.default
        try:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            number = int(raw.strip()) if isinstance(raw, str) else int(raw)
        except (TypeError, ValueError):
            number = None
        if number is None or not self.low <= number <= self.high:
            raise DataError(f"invalid request: {name} must be a whole number from {self.low} to {self.high} "
                            f"(got {str(raw)[:40]!r}).")
        return number


class ExplainSettings(BaseModel):
    """The explain endpoints' options and what the results page computes per profile."""

    model_config = ConfigDict(frozen=True)

    top_moas: Bound = Bound(default=3, low=1, high=20)
    """MoAs attributed per profile (the page's charts use the default)."""
    top_k: Bound = Bound(default=10, low=1, high=100)
    """Features listed per attribution (the page's charts use the default)."""
    neighbours: Bound = Bound(default=10, low=0, high=50)
    """Similar reference profiles per profile (the page lists the default number)."""
    max_attributed: Bound = Bound(default=50, low=0, high=500)
    """Treated profiles attributed per request, at most."""
    page_enriched: int = 5
    """Enriched MoAs listed per profile on the page (the API gives up to 10)."""
    compound_top_k: int = 5
    """A MoA 'agrees' in a profile when it is among that profile's `compound_top_k` most probable MoAs."""
    compound_moas: int = 10
    """MoAs kept per compound (the compound page shows the first N of them, the CSV all)."""
    cache_items: int = 256
    """Stored-result explanations kept (the page's charts ask once per profile)."""

    def bounds(self) -> dict[str, Bound]:
        return {"top_moas": self.top_moas, "top_k": self.top_k, "neighbours": self.neighbours,
                "max_attributed": self.max_attributed}


class PagingSettings(BaseModel):
    """What the results and compound pages show at once (their query parameters are clamped to these)."""

    model_config = ConfigDict(frozen=True)

    n_choices: tuple[int, ...] = (3, 5, 10, 20, 50)
    default_n: int = 10
    """Top MoAs listed per profile."""
    per_page_choices: tuple[int, ...] = (10, 25, 50, 100)
    default_per_page: int = 10
    """Profiles per results page (at most the largest choice)."""
    max_query: int = 100
    """Characters of a search kept."""
    labelled: int = 5
    """Top MoAs labelled on each profile's scatter chart."""
    heatmap_moas: int = 20
    heatmap_max_profiles: int = 400
    """The overview heatmap: the MoAs with the highest mean probability against at most this many profiles."""
    compound_n_choices: tuple[int, ...] = (3, 5, 10)
    compound_n: int = 5
    """MoAs listed per compound (at most the largest choice; the CSV has ``compound_moas``)."""
    compounds_per_page_choices: tuple[int, ...] = (10, 20, 50, 100)
    compounds_per_page: int = 20


class WebSettings(BaseModel):
    """The app's limits and options (``WebSettings()``: the defaults; :meth:`with_upload_mb` for ``moa serve``)."""

    model_config = ConfigDict(frozen=True)

    max_upload_bytes: int = 200 * MB
    """Largest accepted upload file (``moa serve --max-upload-mb``)."""
    multipart_slack: int = 64 * 1024
    """Allowance for multipart boundaries and part headers on top of the file-size limit."""
    top: Bound = Bound(default=10, low=1, high=1000)
    """Top MoAs listed per profile by ``POST /api/predict`` (and the JSON download's default)."""
    max_parallel: int = 2
    """Uploads read, validated, predicted and answered at the same time (the others wait without holding a
    thread, so pages and /api/health keep answering)."""
    store_in_background: bool = True
    """Write results to disk in a background thread (an upload's answer does not wait for its files; see
    ``web/core/store.py``)."""
    store_max_bytes: int = 512 * 1024**2
    store_max_items: int = 100
    """The in-memory cache of stored results (least recently used dropped first; they stay on disk)."""
    confident: float = 0.5
    """A call counts as confident at this probability or above: the results summary's most frequent top MoA
    and the compound page's agreement count only such calls (the rest are counted as "no confident MoA");
    both pages state it."""
    data_dir: str | None = None
    """Where results and jobs are kept (``moa serve --data-dir``; default there: the user's data directory).
    None in ``create_app``: a temporary directory removed with the app (tests, notebooks)."""
    max_age_days: float = 30.0
    """Results older than this expire (``moa serve --max-age-days``): their link says so (410)."""
    max_disk_bytes: int = 2048 * MB
    """Stored results' total size on disk; the oldest expire beyond it (``moa serve --max-store-mb``)."""
    job_threshold_bytes: int = 50 * MB
    """Uploaded files larger than this are predicted by a background job (202 + a job URL; the page shows its
    progress) instead of during the request (``moa serve --job-threshold-mb``)."""
    job_workers: int = 1
    """Background jobs run at the same time (each also takes one of ``max_parallel``'s slots)."""
    token: str | None = Field(default=None, repr=False)
    """Access token (``moa serve --token`` / ``MOA_TOKEN``): when set, every page and API call but
    ``/api/health`` needs it (``Authorization: Bearer ...`` or the cookie the login form sets)."""
    explain: ExplainSettings = ExplainSettings()
    paging: PagingSettings = PagingSettings()

    @field_validator("max_upload_bytes")
    @classmethod
    def _positive(cls, value: int) -> int:
        """The one check of the upload limit (``moa serve``, ``moa demo`` and ``create_app`` all end here)."""
        if value <= 0:
            raise ValueError("max_upload_mb must be positive")
        return value

    @field_validator("max_age_days", "max_disk_bytes", "job_threshold_bytes", "job_workers")
    @classmethod
    def _retention_positive(cls, value: float, info: Any) -> float:
        if value <= 0:
            raise ValueError(f"{info.field_name} must be positive")
        return value

    def with_upload_mb(self, max_upload_mb: float) -> "WebSettings":
        """These settings with another upload limit, in megabytes (ValueError unless positive)."""
        return self.replace(max_upload_bytes=int(max_upload_mb * MB))

    def replace(self, **changes: Any) -> "WebSettings":
        """These settings with some values changed, validated again."""
        return self.model_validate({**self.model_dump(), **changes})

    @property
    def max_age_seconds(self) -> float:
        return self.max_age_days * 86400

    @property
    def max_upload_mb(self) -> float:
        return self.max_upload_bytes / MB

    @property
    def max_body_bytes(self) -> int:
        """The request-body limit enforced while streaming: the file limit plus the multipart overhead."""
        return self.max_upload_bytes + self.multipart_slack
