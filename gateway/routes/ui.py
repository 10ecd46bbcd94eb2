"""The browser side: a page at ``/`` to try the models, and the API docs, all served from installed packages.

Nothing is fetched from a CDN, so the page and the docs work on a machine without internet: the page's own
assets ship in ``gateway/ui``, and Swagger UI's and ReDoc's come from the ``fastapi-offline`` package. A
Content-Security-Policy keeps it so: ReDoc, for one, would otherwise load its footer logo from redoc.ly.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"

# Served by name from a fixed list: no path from the URL ever reaches the filesystem.
_UI_ASSETS = frozenset({"app.js", "app.css"})
_DOCS_ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"})

# The page runs no inline script; FastAPI's Swagger UI page starts with one. Images may be data: or blob: URLs
# (the photo and edge map on the page, icons in the docs); ReDoc runs its search in a blob: worker.
_PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'"
)
_DOCS_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


def _asset(folder: Path, allowed: frozenset[str], name: str) -> FileResponse:
    if name not in allowed:
        raise HTTPException(404, f"no asset named {name!r}")  # answered as the API's JSON not_found error
    # no-cache: the browser revalidates (ETag / Last-Modified), so an upgraded gateway never serves a stale page.
    return FileResponse(folder / name, headers={"Cache-Control": "no-cache"})


def _prefix(request: Request) -> str:
    """The path the app is mounted at behind a proxy (uvicorn --root-path), so docs find their assets there."""
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(
        UI_DIR / "index.html", headers={"Cache-Control": "no-cache", "Content-Security-Policy": _PAGE_CSP}
    )


@router.get("/ui/{name}")
async def ui_asset(name: str) -> FileResponse:
    return _asset(UI_DIR, _UI_ASSETS, name)


@router.get("/docs/assets/{name}")
async def docs_asset(name: str) -> FileResponse:
    return _asset(DOCS_ASSETS_DIR, _DOCS_ASSETS, name)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    prefix = _prefix(request)
    html = get_swagger_ui_html(
        openapi_url=f"{prefix}{request.app.openapi_url}",
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{prefix}/docs/assets/swagger-ui-bundle.js",
        swagger_css_url=f"{prefix}/docs/assets/swagger-ui.css",
        swagger_favicon_url=f"{prefix}/docs/assets/favicon.png",
        # persistAuthorization keeps a key entered under "Authorize" across reloads; no online spec validator.
        swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None},
    )
    html.headers["Content-Security-Policy"] = _DOCS_CSP
    return html


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    prefix = _prefix(request)
    html = get_redoc_html(
        openapi_url=f"{prefix}{request.app.openapi_url}",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{prefix}/docs/assets/redoc.standalone.js",
        redoc_favicon_url=f"{prefix}/docs/assets/favicon.png",
        with_google_fonts=False,
    )
    html.headers["Content-Security-Policy"] = _DOCS_CSP
    return html
