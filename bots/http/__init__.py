"""The HTTP door: a FastAPI app with the JSON API, the chat page and Prometheus metrics."""

from bots.http.app import create_app

__all__ = ["create_app"]
