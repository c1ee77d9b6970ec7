"""Offline testing kit: the loopback archive server and synthetic data generators.

Nothing here is real data: files written by the generators are marked synthetic in every piece
of metadata downstream.
"""

from pd4ml.testing.server import (
    HTML_ERROR_PAGE,
    ArchiveServer,
    Fault,
    ServedRequest,
    serve_directory,
)

__all__ = ["HTML_ERROR_PAGE", "ArchiveServer", "Fault", "ServedRequest", "serve_directory"]
