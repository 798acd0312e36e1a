"""simvp's error types, importable without torch."""


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, modified, or does not fit what it is used for."""
