"""``/docs`` (Swagger UI) and ``/redoc``: the API reference, served with the viewers' files from the installed
``fastapi-offline`` package so that it works without a network (FastAPI's default pages load them from a CDN).
Only the package's files are used, not its app class. ReDoc's bundle also shows a "by Redocly" logo from a CDN;
``/redoc.js`` is the bundle with that image dropped (it hides itself when its image fails to load)."""

from __future__ import annotations

from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

_SPEC = find_spec("fastapi_offline")
if _SPEC is None or not _SPEC.submodule_search_locations:
    raise ImportError("fastapi-offline is not installed: the API reference pages need its Swagger UI and ReDoc files")
ASSETS_DIR = Path(next(iter(_SPEC.submodule_search_locations))) / "static"
ASSETS_URL = "/docs-assets"
REDOC_JS_URL = "/redoc.js"
REDOC_CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"

router = APIRouter()


@router.get("/docs", include_in_schema=False)
async def swagger(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=str(request.app.openapi_url),
        title=f"{request.app.title} API",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
    )


@router.get("/redoc", include_in_schema=False)
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=str(request.app.openapi_url),
        title=f"{request.app.title} API",
        redoc_js_url=REDOC_JS_URL,
        redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )


@lru_cache(maxsize=1)
def _redoc_bundle() -> bytes:
    text = (ASSETS_DIR / "redoc.standalone.js").read_text(encoding="utf-8")
    # "data:," is no image: the logo's onError handler removes it, and nothing is fetched
    return text.replace(REDOC_CDN_LOGO, "data:,").encode("utf-8")


@router.get(REDOC_JS_URL, include_in_schema=False)
async def redoc_js() -> Response:
    return Response(
        _redoc_bundle(), media_type="application/javascript", headers={"Cache-Control": "public, max-age=86400"}
    )
