"""The app as uvicorn's worker processes build it (`harbor serve --workers N`)."""

from fastapi import FastAPI

from api.http.app import create_app
from store import open_registry


def app_from_environment() -> FastAPI:
    """An app on HARBOR_DATABASE_URL (each worker opens its own store and follower)."""
    return create_app(open_registry())
