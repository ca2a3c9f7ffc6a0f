"""Span sources that listen on the network instead of tailing files (OTLP)."""
