"""The desk (/ui/): the API in a browser, for clerks and auditors.

A clerk asks "who is here, what is waiting for us" and records what the unit just did; an
auditor replays a member's history on a date and ranks units; all of it was curl or
`/docs` before. The page is static (HTML,
CSS and plain JavaScript in api/http/static, no build step and no outside host), so it
works on networks with no internet. It holds no rights of its own: it asks the same
routes with the token the user pastes, which this tab keeps in its session storage.
"""

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, RedirectResponse, Response

UI = "/ui"
ASSETS = f"{UI}/assets"
STATIC = Path(__file__).with_name("static")

# The page runs only its own script and talks only to this server: a record's text can
# never bring in a script, and no other site can frame the page to catch a pasted token.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def install(app: FastAPI) -> None:
    """Serve the desk at /ui/ and its files under /ui/assets (no token needed for either)."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="ui-assets")

    async def desk(request: Request) -> Response:
        return HTMLResponse(page, headers=HEADERS)

    async def to_desk(request: Request) -> Response:
        # The page finds its files and the API relative to /ui/, so it needs the slash.
        root = request.scope.get("root_path", "").rstrip("/")
        return RedirectResponse(f"{root}{UI}/", status_code=308)

    app.add_route(f"{UI}/", desk, include_in_schema=False)
    app.add_route(UI, to_desk, include_in_schema=False)
