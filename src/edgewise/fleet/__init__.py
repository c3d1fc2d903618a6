"""The control plane: HTTP API, database, rollouts, ingest, dashboard."""
