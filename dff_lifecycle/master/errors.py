"""Errors of the master's parts that end a run with a one-line message."""


class PipelineError(RuntimeError):
    """The pipeline stalled, a layer left, or bring-up failed beyond recovery."""
