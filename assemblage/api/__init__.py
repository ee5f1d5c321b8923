"""The coordinator's REST API (FastAPI), one router per resource, under ``/api/v1``."""

from assemblage.api.app import API_PREFIX, create_app

__all__ = ["API_PREFIX", "create_app"]
