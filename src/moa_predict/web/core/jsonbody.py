"""The JSON bytes of every API answer and JSON download: orjson, about ten times faster than the standard
library on the 800,000 probabilities of a 4,000-profile answer (the bulk of an upload's answer time).

Numbers are written as the shortest text that reads back to the same float (as ``json.dumps`` does; only the
exponent's spelling may differ: ``1e-6`` for ``1e-06``). The API's numbers are finite; a NaN or infinity that
slipped through would be written as null, never as invalid JSON.
"""

from __future__ import annotations

from typing import Any

import orjson

OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def json_bytes(content: Any) -> bytes:
    """Compact JSON of `content` (dicts, lists, tuples, numbers, texts, numpy arrays and scalars, sets)."""
    try:
        return orjson.dumps(content, option=OPTIONS, default=_fallback)
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"not JSON-serialisable: {exc}") from None


def _fallback(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
