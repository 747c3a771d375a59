"""Jinja2 templates of the pages, their filters, and the standalone error page."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from ... import __version__
from .views import percent_text

WEB_DIR = Path(str(resources.files("moa_predict.web")))
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"


@cache
def templates() -> Jinja2Templates:
    """The one template environment (built on first use: the templates never change while serving)."""
    result = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env = result.env
    env.globals["version"] = __version__
    env.filters["thousands"] = lambda v: f"{v:,}" if isinstance(v, (int, float)) else v
    env.filters["mini_markdown"] = mini_markdown
    env.filters["wbr"] = lambda v: Markup(str(escape(v)).replace("_", "_<wbr>"))
    env.filters["pct"] = percent
    env.filters["pvalue"] = p_value_text
    return result


def mini_markdown(text: str) -> Markup:
    """Paragraphs, `code` and **bold** of the API docstrings, HTML-escaped first."""
    out = []
    for para in re.split(r"\n\s*\n", str(text or "")):
        html = str(escape(para.strip()))
        html = re.sub(r"`([^`]+)`", r"<code>\1</code>", html)
        html = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", html)
        if html:
            out.append(f"<p>{html}</p>")
    return Markup("\n".join(out))


def percent(p: Any) -> str:
    return percent_text(float(p)) if isinstance(p, (int, float)) else ""


def p_value_text(p: Any) -> str:
    """3 significant digits; scientific below 0.001 (1.2e-07)."""
    if not isinstance(p, (int, float)):
        return ""
    return f"{p:.2g}" if p < 1e-3 else f"{p:.3g}"


def render_error_page(message: str, status: int, card: dict | None = None) -> str:
    """A standalone error page (used where no request object is at hand, e.g. the body-limit middleware)."""
    return templates().env.get_template("error.html").render(
        message=message, status=status, root="", card=card or {}, request=None)
