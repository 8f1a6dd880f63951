"""``/``: the chat page (its scripts and styles are served from ``/static``).

The page is the static ``index.html`` with the few settings it needs filled in as data attributes on ``<body>``
(``data-max-question-chars``), so that it can flag a question over the limit before sending it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from service.web.deps import SettingsDep

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MAX_CHARS_PLACEHOLDER = "{{max_question_chars}}"

router = APIRouter()


@lru_cache(maxsize=1)
def _template() -> str:
    return (STATIC_DIR / "index.html").read_text(encoding="utf-8")


@router.get("/", include_in_schema=False)
async def page(settings: SettingsDep) -> HTMLResponse:
    html = _template().replace(MAX_CHARS_PLACEHOLDER, str(int(settings.max_question_chars)))
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})
