"""The app as uvicorn's worker processes build it (`harbor serve --workers N`)."""

import os

from fastapi import FastAPI

from api.http.app import create_app
from store import open_registry
from store.collection import serving_collections


def app_from_environment() -> FastAPI:
    """An app on HARBOR_DATABASE_URL: each worker opens its own store, and follows the log
    itself (a thread, under the projection lease) only if HARBOR_FOLLOW_IN_WORKER says so."""
    serving_collections()
    registry = open_registry()
    if os.environ.get("HARBOR_GROUP_COMMIT", "on").lower() not in ("off", "no", "0", "false"):
        registry.enable_group_commit()
    warm = os.environ.get("HARBOR_WARM_CACHE", "yes").lower() not in ("off", "no", "0", "false")
    threads = int(os.environ.get("HARBOR_THREADS", "0")) or None
    # harbor serve sets this before starting the workers: "yes" for --follower thread, "no"
    # for process (its one follower process serves every worker) or none. Unset (uvicorn
    # run on this factory without harbor serve), each worker follows in a thread.
    follow = os.environ.get("HARBOR_FOLLOW_IN_WORKER", "yes").lower() not in ("off", "no", "0")
    return create_app(registry, threads=threads, seal=True, warm=warm, follow=follow)
