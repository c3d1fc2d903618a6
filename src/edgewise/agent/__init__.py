"""The device runtime: sync, updates, inference pipeline, outbox, telemetry. Never imports torch."""
