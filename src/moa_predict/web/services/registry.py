"""The models one server answers with: one or more bundles (``moa serve --bundle A --bundle B``), the first
the default, each under a name unique on this server (the ``model`` field of an upload, ``GET /api/models``).

Every stored result remembers the name of the model that answered it, so its pages and downloads are drawn by
that model; a result of an older server (no name) belongs to the default model.
"""

from __future__ import annotations

import asyncio
import re
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from ...data.errors import DataError
from ...bundle import Bundle
from .model_service import ModelService
from ..core.settings import WebSettings
from ..core.store import Prediction, ResultStore, ResultUnavailable

NAME = re.compile(r"[^A-Za-z0-9._-]+")


def bundle_name(bundle: Bundle) -> str:
    """A bundle's name for people and for the ``model`` field: the name it carries (built-in bundles), else
    its directory's name, else its model's."""
    given = bundle.info.get("name") if isinstance(bundle.info.get("name"), str) else None
    raw = given or (bundle.path.name if bundle.path is not None else "") or bundle.model_name
    return NAME.sub("-", raw).strip("-.") or bundle.model_name


class Gate:
    """At most `n` request pipelines (read, predict, answer) at once. Waiting requests wait in the event loop,
    holding no thread of the threadpool, so pages and /api/health keep answering under a burst of uploads."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = \
            weakref.WeakKeyDictionary()

    def __call__(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._by_loop.get(loop)
        if sem is None:
            sem = self._by_loop[loop] = asyncio.Semaphore(self.n)
        return sem


class ServedModels:
    """The served models by name (in the order given; the first is the default), sharing one result store
    and one limit on parallel work."""

    def __init__(self, bundles: Sequence[Bundle], settings: WebSettings, store: ResultStore) -> None:
        if not bundles:
            raise DataError("no model to serve: give at least one bundle (--bundle DIR).")
        slots = threading.BoundedSemaphore(settings.max_parallel)
        self.services: dict[str, ModelService] = {}
        for bundle in bundles:
            name = base = bundle_name(bundle)
            k = 2
            while name in self.services:
                name, k = f"{base}-{k}", k + 1
            self.services[name] = ModelService(bundle, settings, store=store, name=name, slots=slots)
        self.default = next(iter(self.services.values()))
        self.gate = Gate(settings.max_parallel)
        """Uploads worked on at once (read, predict, answer)."""
        self.reading = Gate(2 * settings.max_parallel)
        """Upload bodies received and parsed at once: the others stay unread in their sockets (uvicorn stops
        reading them), so the event loop never parses fifty 25 MB bodies side by side while /api/health waits."""

    @property
    def names(self) -> list[str]:
        return list(self.services)

    def __len__(self) -> int:
        return len(self.services)

    def get(self, name: Any = None) -> ModelService:
        """The model an upload asks for (`name`: the ``model`` field; missing or blank: the default);
        DataError naming the served models for any other name."""
        if isinstance(name, (list, tuple)):
            name = name[-1] if name else None
        if name is None or (isinstance(name, str) and not name.strip()):
            return self.default
        found = self.services.get(str(name).strip())
        if found is None:
            raise DataError(f"invalid request: no model named {str(name)[:60]!r} on this server. Served: "
                            f"{', '.join(self.services)} (see GET /api/models).")
        return found

    def for_result(self, pred: Prediction) -> ModelService:
        """The model that answered a stored result (the default for results kept before names were)."""
        if pred.model is None:
            return self.default
        found = self.services.get(pred.model)
        if found is None:
            raise ResultUnavailable(410, f"this result was answered by model {pred.model!r}, which this server no "
                                         f"longer serves (it serves {', '.join(self.services)}). Upload the file "
                                         "again to get an answer from one of them.")
        return found

    def listing(self) -> list[dict[str, Any]]:
        """``GET /api/models``: each model's name, what it is and whether it is the default."""
        return [{"name": name, "default": service is self.default, **service.identity()}
                for name, service in self.services.items()]
