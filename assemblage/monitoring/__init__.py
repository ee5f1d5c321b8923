"""Watching a running service: structured logs with run and build ids, and Prometheus metrics."""

from assemblage.monitoring.logs import bind_log_context, configure_logging, log_context, reset_log_context

__all__ = ["bind_log_context", "configure_logging", "log_context", "reset_log_context"]
