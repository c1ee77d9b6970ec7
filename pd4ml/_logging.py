"""The ``pd4ml`` logger. The library never prints; applications configure logging."""

from __future__ import annotations

import logging

logger = logging.getLogger("pd4ml")
logger.addHandler(logging.NullHandler())


def get_logger(name: str | None = None) -> logging.Logger:
    """Return the ``pd4ml`` logger or one of its children (``pd4ml.<name>``)."""
    return logger if name is None else logger.getChild(name)
