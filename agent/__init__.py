"""sidecar-agent: span logs to Jaeger, messages to Redis Streams."""

# First, before any hot module is imported: a compiled build of them, if one matches
# these sources, takes their place (see agent/native).
from agent import native as native

__version__ = "0.1.0"
