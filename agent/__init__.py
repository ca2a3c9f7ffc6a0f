"""sidecar-agent: span logs to Jaeger, messages to Redis Streams."""

__version__ = "0.1.0"
