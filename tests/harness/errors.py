"""The one error the harness raises when it cannot give a test the server it asked for."""


class HarnessError(RuntimeError):
    """A test server could not be found, started or reached; the message says why and what to do."""
