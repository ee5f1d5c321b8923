"""Metadata: SQLAlchemy models and sessions (parsers and Celery know nothing of this)."""
