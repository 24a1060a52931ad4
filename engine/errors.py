"""Errors raised by the engine for problems the caller can fix (bad config, missing model)."""


class EngineError(Exception):
    """A configuration or input problem; the message says how to fix it."""
