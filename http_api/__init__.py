"""The HTTP API (route prefix `api`): threads, messages, health."""

from http_api.routes import bp

__all__ = ["bp"]
