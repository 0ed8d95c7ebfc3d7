"""The desk (/ui/): the API in a browser, for clerks and auditors.

A clerk asks "who is here, what is waiting for us" and records what the unit just did; an
auditor replays a member's history on a date and ranks units; all of it was curl or
`/docs` before. The page is static (HTML,
CSS and plain JavaScript in api/http/desk, no build step and no outside host), so it
works on networks with no internet. It holds no rights of its own: it asks the same
routes with the token the user pastes, which this tab keeps in its session storage.
"""

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UI = "/ui"
ASSETS = f"{UI}/assets"
HERE = Path(__file__).with_name("desk")  # index.html, and assets/ with the script and style

# The page runs only its own script and talks only to this server: a record's text can
# never bring in a script, no other site can frame the page to catch a pasted token, and
# no form can be sent anywhere (a sign-in pressed before the script ran stays put, rather
# than putting the token in a URL).
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Asked again every time (answered 304 when unchanged): after an upgrade no browser
    # runs yesterday's script against today's API.
    "Cache-Control": "no-cache",
}


def install(app: FastAPI) -> None:
    """Serve the desk at /ui/ and its files under /ui/assets (no token needed for either)."""
    page = (HERE / "index.html").read_text(encoding="utf-8")
    app.mount(ASSETS, WithHeaders(StaticFiles(directory=HERE / "assets")), name="ui-assets")

    async def desk(request: Request) -> Response:
        return HTMLResponse(page, headers=HEADERS)

    async def to_desk(request: Request) -> Response:
        # The page finds its files and the API relative to /ui/, so it needs the slash; a
        # relative answer keeps working behind a proxy that strips a path prefix.
        return RedirectResponse("ui/", status_code=308)

    app.add_route(f"{UI}/", desk, include_in_schema=False)
    app.add_route(UI, to_desk, include_in_schema=False)


class WithHeaders:
    """An ASGI app's responses with the desk's headers added."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.extra = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to the response's start."""

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.extra]}
            await send(message)

        await self.app(scope, receive, sending)
