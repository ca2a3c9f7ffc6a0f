"""The OTLP trace receiver: OTLP/HTTP on 4318, OTLP/gRPC on 4317 with the `grpc` extra."""
