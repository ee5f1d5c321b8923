"""The pipeline: steps as plain functions of IDs, an embedded orchestrator, run reports."""
