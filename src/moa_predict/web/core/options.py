"""The API's request options as Pydantic models, each validated once against the app's settings.

``POST /api/explain`` takes its options from the query string, multipart form fields or JSON keys next to
``rows``; all of them go through :meth:`ExplainOptions.parse` (bounds and defaults from
:class:`~.settings.ExplainSettings`). Bad values raise DataError: 422 with the usual error JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from ...data.errors import DataError
from .settings import ExplainSettings, WebSettings

LIST_OPTIONS = frozenset({"sig_ids", "sig_id", "moas", "moa"})
"""Options that are lists even when given once in a query string."""

_BOOL = TypeAdapter(bool)

MODEL_HELP = ("the served model to answer (its name in GET /api/models); default: the server's first model")


def query_values(query: Any) -> dict[str, Any]:
    """A query string's values: name -> text, or list of texts for repeated names and list options."""
    values: dict[str, Any] = {}
    for key in query:
        items = query.getlist(key)
        values[key] = items if len(items) > 1 or key in LIST_OPTIONS else items[0]
    return values


class PredictOptions(BaseModel):
    """``POST /api/predict``'s query options."""

    model_config = ConfigDict(frozen=True)

    top: int
    probabilities: bool = True
    set_level: float | None = None
    call_precision: float | None = None

    HELP: ClassVar[dict[str, str]] = {"top": "how many top MoAs to list per profile",
            "probabilities": "include all probabilities (in 'targets' order)",
            "set_level": "level of the MoA sets: the share of true MoAs the sets should contain on compounds the "
                         "model has not seen, 0.5-0.99 (default: the model's, 0.9)",
            "call_precision": "precision of the confident calls: the share of calls that should be right on "
                              "compounds the model has not seen, 0.5, 0.55, ..., 0.95 (default 0.8)"}

    @classmethod
    def parse(cls, values: Mapping[str, Any], settings: WebSettings) -> "PredictOptions":
        raw = values.get("probabilities")
        try:
            probabilities = True if raw is None else _BOOL.validate_python(raw)
        except ValidationError:
            raise DataError(f"invalid request: probabilities must be true or false (got {str(raw)[:40]!r}).") from None
        return cls(top=settings.top.read("top", values.get("top")), probabilities=probabilities,
                   set_level=read_set_level(values.get("set_level")),
                   call_precision=read_set_level(values.get("call_precision"), CALL_LEVELS, "call_precision"))


SET_LEVELS = (0.5, 0.99)
CALL_LEVELS = (0.5, 0.95)


def read_set_level(raw: Any, bounds: tuple[float, float] = SET_LEVELS, name: str = "set_level") -> float | None:
    """A set level (0.5-0.99, as a share; 90 is read as 0.90; or a call precision within `bounds`) or None when
    missing; else DataError."""
    if isinstance(raw, (list, tuple)):
        raw = raw[-1] if raw else None
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        if isinstance(raw, bool):
            raise ValueError
        level = float(raw.strip().rstrip("%")) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError):
        level = float("nan")
    if 1 < level <= 100:
        level /= 100
    if not bounds[0] <= level <= bounds[1]:
        raise DataError(f"invalid request: {name} must be a share from {bounds[0]} to {bounds[1]} "
                        f"(e.g. {0.9 if name == 'set_level' else 0.8}; got {str(raw)[:40]!r}).")
    return round(level, 2)


class ExplainOptions(BaseModel):
    """What to explain. One parser for query parameters, JSON body keys and multipart form fields."""

    model_config = ConfigDict(frozen=True)

    sig_ids: tuple[str, ...] | None = None
    moas: tuple[str, ...] | None = None
    top_moas: int
    top_k: int
    neighbours: int
    max_attributed: int
    label_set: str | None = None
    """The bundle's label set to explain (``target``: the protein-target model) instead of its MoAs; None: the MoAs."""

    HELP: ClassVar[dict[str, str]] = {"sig_ids": "explain only these profiles (ids from the upload's sig_id column; repeat the parameter)",
            "moas": "attribute these MoAs (names as in GET /api/model) instead of each profile's top ones",
            "top_moas": "how many of each profile's most probable MoAs to attribute",
            "top_k": "features listed per attribution (largest |attribution| first)",
            "neighbours": "similar reference profiles per profile (0: none; OOD flags are always given)",
            "max_attributed": "attribute at most this many treated profiles (the first ones; attributions "
                              "cost ~10-40 ms per profile and MoA)",
            "label_set": "explain the model of this label set instead of the MoAs (e.g. target: the genes behind each "
                         "protein-target call; 'moas' then names targets); models list theirs in GET /api/model"}

    @classmethod
    def parse(cls, values: Mapping[str, Any], settings: ExplainSettings, targets: Sequence[str],
              label_sets: Mapping[str, Any] | None = None) -> "ExplainOptions":
        """`values`: name -> value or list of values (``sig_id`` is accepted for ``sig_ids``, ``moa`` for
        ``moas``; other names are ignored). Missing numbers take the settings' defaults. `label_sets`: the bundle's
        (``Bundle.label_sets``, name -> bundle with ``target_names``): ``label_set`` must name one of them, and
        ``moas`` then names its labels."""
        numbers = {name: bound.read(name, values.get(name)) for name, bound in settings.bounds().items()}
        sig_ids = _texts(values, "sig_ids", "sig_id")
        moas = _texts(values, "moas", "moa")
        label_set = read_label_set(values.get("label_set"), label_sets or {})
        what = "MoA"
        if label_set is not None:
            targets, what = list(label_sets[label_set].target_names), f"{label_set} label"
        if moas:
            known = set(targets)
            unknown = [m for m in moas if m not in known]
            if unknown:
                raise DataError(f"unknown {what} name(s): {', '.join(repr(m[:60]) for m in unknown[:5])}. The model "
                                f"predicts {len(targets)} {what}s, named as in GET /api/model (e.g. "
                                f"{', '.join(targets[:2])}).")
        return cls(sig_ids=tuple(sig_ids) or None, moas=tuple(moas) or None, label_set=label_set, **numbers)

    @classmethod
    def defaults(cls, settings: ExplainSettings) -> "ExplainOptions":
        return cls.parse({}, settings, ())


MOA_LABEL_SET = "moa"
"""The name ``label_set`` may give to the bundle's own labels, the MoAs (the same as leaving it out)."""


def read_label_set(raw: Any, label_sets: Mapping[str, Any]) -> str | None:
    """A ``label_set`` option: None for the MoAs (missing, empty or ``moa``), else one of `label_sets`' names;
    DataError naming the ones the model has."""
    if isinstance(raw, (list, tuple)):
        raw = raw[-1] if raw else None
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise DataError("invalid request: label_set must be a text (e.g. target).")
    name = raw.strip()
    if not name or name == MOA_LABEL_SET:
        return None
    if name not in label_sets:
        have = ", ".join(repr(n) for n in label_sets) or "none besides the MoAs"
        raise DataError(f"this model has no {name[:60]!r} label set (it has {have}); leave label_set out to "
                        "explain the MoAs.")
    return name


def _texts(values: Mapping[str, Any], *names: str) -> list[str]:
    out: list[str] = []
    for name in names:
        raw = values.get(name)
        if raw is None:
            continue
        items = raw if isinstance(raw, (list, tuple)) else [raw]
        for item in items:
            if not isinstance(item, (str, int, float)) or isinstance(item, bool):
                raise DataError(f"invalid request: {names[0]} must be a list of texts.")
            text = str(item).strip()
            if text:
                out.append(text)
    return list(dict.fromkeys(out))


def query_parameters(settings: WebSettings) -> dict[str, list[dict[str, Any]]]:
    """OpenAPI `parameters` of the option models, per operation (the routes read the options themselves, so
    FastAPI cannot see them; /docs and /openapi.json list them from here, with the app's own bounds)."""

    def number(name: str, bound: Any, help_: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "description": help_,
                "schema": {"type": "integer", "minimum": bound.low, "maximum": bound.high, "default": bound.default}}

    def texts(name: str, help_: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "description": help_,
                "schema": {"type": "array", "items": {"type": "string"}}}

    help_ = ExplainOptions.HELP
    explain = [texts("sig_ids", help_["sig_ids"]), texts("moas", help_["moas"]),
               *(number(name, bound, help_[name]) for name, bound in settings.explain.bounds().items()),
               {"name": "label_set", "in": "query", "required": False, "description": help_["label_set"],
                "schema": {"type": "string"}}]
    stored = [texts("sig_ids", help_["sig_ids"] + "; also accepted as sig_id"), *explain[1:]]
    predict = [number("top", settings.top, PredictOptions.HELP["top"]),
               {"name": "probabilities", "in": "query", "required": False,
                "description": PredictOptions.HELP["probabilities"], "schema": {"type": "boolean", "default": True}},
               {"name": "set_level", "in": "query", "required": False, "description": PredictOptions.HELP["set_level"],
                "schema": {"type": "number", "minimum": SET_LEVELS[0], "maximum": SET_LEVELS[1]}},
               {"name": "call_precision", "in": "query", "required": False,
                "description": PredictOptions.HELP["call_precision"],
                "schema": {"type": "number", "minimum": CALL_LEVELS[0], "maximum": CALL_LEVELS[1]}}]
    model = {"name": "model", "in": "query", "required": False, "description": MODEL_HELP,
             "schema": {"type": "string"}}
    return {"/api/predict": [*predict, model], "/api/explain": [*explain, model],
            "/api/results/{result_id}/explain": stored, "/api/model": [model]}
