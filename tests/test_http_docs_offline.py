"""/docs and /redoc work on a network with no internet: every asset comes from Harbor.

FastAPI's own pages load Swagger UI, ReDoc, their favicon and (for ReDoc) Google Fonts
from CDNs, and show a blank page where those cannot be reached. Here each page must
name no external host at all, and every script, stylesheet and icon it names must be
served by the app itself, without a token, like the page.
"""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from domain.registry import Registry

PAGES = ("/docs", "/redoc")


class _Assets(HTMLParser):
    """The URLs a page loads: scripts, stylesheets and icons, each with its kind."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script" and named.get("src"):
            self.found.append(("script", named["src"] or ""))
        elif tag == "link" and named.get("href"):
            rel = (named.get("rel") or "").lower().split()
            kind = "stylesheet" if "stylesheet" in rel else "icon" if "icon" in rel else "link"
            self.found.append((kind, named["href"] or ""))


def assets_of(html: str) -> list[tuple[str, str]]:
    """Each (kind, URL) that ``html`` loads."""
    parser = _Assets()
    parser.feed(html)
    return parser.found


EXPECTED_TYPE = {"script": "javascript", "stylesheet": "text/css", "icon": "image/"}


@pytest.fixture
def client(registry: Registry) -> Iterator[TestClient]:
    """The app on SQLite and on PostgreSQL; the docs need no projections kept current."""
    with TestClient(create_app(registry, follow=False)) as client:
        yield client


@pytest.mark.parametrize("page", PAGES)
def test_the_docs_page_names_no_external_host(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html and "https://" not in html, html
    assert "src=\"//" not in html and "href=\"//" not in html, html
    assert "fonts.googleapis" not in html
    for _, url in assets_of(html):
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, url


@pytest.mark.parametrize("page", PAGES)
def test_every_asset_of_the_docs_page_is_served_without_a_token(
    client: TestClient, page: str
) -> None:
    assets = assets_of(client.get(page).text)
    kinds = {kind for kind, _ in assets}
    assert {"script", "icon"} <= kinds, assets
    if page == "/docs":
        assert "stylesheet" in kinds, assets
    for kind, url in assets:
        assert kind in EXPECTED_TYPE, (kind, url)
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        assert EXPECTED_TYPE[kind] in response.headers["content-type"], (
            url,
            response.headers["content-type"],
        )
        assert len(response.content) > 1000, url  # the real file, not an empty answer


@pytest.mark.parametrize("page", PAGES)
def test_the_docs_page_loads_the_schema_the_app_serves(client: TestClient, page: str) -> None:
    html = client.get(page).text
    assert "'/openapi.json'" in html or '"/openapi.json"' in html, html
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "Harbor"


def test_the_docs_pages_and_assets_stay_out_of_the_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))], sorted(paths)


def test_swagger_uis_oauth2_redirect_page_is_still_served(client: TestClient) -> None:
    response = client.get("/docs/oauth2-redirect")
    assert response.status_code == 200
    assert "http://" not in response.text and "https://" not in response.text
