"""The devices' side of the domain: enrollment, the device twin (reported and desired state),
exactly-once ingest of events and telemetry, and forwarding them to webhooks and MQTT."""
