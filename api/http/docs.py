"""Swagger UI (/docs) and ReDoc (/redoc) with every asset served by Harbor itself.

FastAPI's own pages load their JavaScript, CSS and favicon from cdn.jsdelivr.net and
fastapi.tiangolo.com (and ReDoc its fonts from Google): on the networks Harbor runs on,
with no internet, they are blank. The same pages are built here with FastAPI's
``get_swagger_ui_html`` and ``get_redoc_html``, pointed at the files the
fastapi-offline package ships (Swagger UI 5 and ReDoc 2, the versions FastAPI's CDN
URLs name), served under /docs/assets.
"""

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

DOCS = "/docs"
REDOC = "/redoc"
# Under /docs so that the Guard lets the assets through without a token, as it does the
# page (app.PUBLIC); StaticFiles refuses to start if the package lacks the folder.
ASSETS = f"{DOCS}/assets"
_PACKAGE = ("fastapi_offline", "static")


def install(app: FastAPI) -> None:
    """Serve /docs, its OAuth2 redirect page and /redoc on ``app``, assets included.

    ``app`` is made with ``docs_url=None, redoc_url=None`` so that FastAPI adds no pages
    of its own at those paths.
    """
    openapi_url = app.openapi_url
    assert openapi_url is not None, "the pages show the app's OpenAPI document"
    redirect_url = app.swagger_ui_oauth2_redirect_url
    app.mount(ASSETS, StaticFiles(packages=[_PACKAGE]), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root_path(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            oauth2_redirect_url=root + redirect_url if redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def swagger_ui_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = _root_path(request)
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,  # ReDoc falls back to the browser's own fonts
        )

    app.add_route(DOCS, swagger_ui, include_in_schema=False)
    if redirect_url:
        app.add_route(redirect_url, swagger_ui_redirect, include_in_schema=False)
    app.add_route(REDOC, redoc, include_in_schema=False)


def _root_path(request: Request) -> str:
    """The prefix a proxy serves the app under, as FastAPI's own pages use it."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")
