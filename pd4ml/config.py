"""Configuration from the environment (and the ``path=`` argument of ``load``).

* ``PD4ML_DATA_DIR``: writable cache root (default: the platform's user cache dir,
  e.g. ``~/.cache/pd4ml``).
* ``PD4ML_SHARED_DATA``: read-only cache roots searched first, separated by ``os.pathsep``.
* ``PD4ML_MIRROR``: base URLs or directories tried before the archive (spaces or commas).
* ``PD4ML_OFFLINE=1``: never touch the network. Shared layers, the user cache and local
  ``PD4ML_MIRROR`` entries (directories, ``file://`` URLs) are still used; network mirrors and
  archives are skipped, and a file found nowhere locally fails fast, named with the remedy.
* ``PD4ML_PROGRESS``: ``auto`` (a progress bar on a terminal), ``on`` or ``off``.
* ``PD4ML_ZENODO_URL``: base URL of a Zenodo-compatible service (default zenodo.org).
* ``PD4ML_CERN_OPENDATA_URL``: base URL of a CERN-Open-Data-compatible portal.
* ``PD4ML_ZENODO_TOKEN``: optional Zenodo token (sent to the Zenodo host only).

The standard ``HTTPS_PROXY``/``NO_PROXY`` and ``REQUESTS_CA_BUNDLE`` are honoured by ``requests``;
``SSL_CERT_FILE`` names the CA bundle when ``REQUESTS_CA_BUNDLE`` is unset (see
:func:`pd4ml.fetch.http.new_session`). TLS verification is never switched off.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import platformdirs

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one URL: attempts without progress, exponential backoff, Retry-After cap.

    Delays are in seconds. A failure after which bytes were received resets the attempt count, so
    a long download that drops now and then still completes.
    """

    max_attempts: int = 6
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 120.0
    connect_timeout: float = 15.0
    read_timeout: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Delay before attempt number ``attempt`` (1-based) when the server gave no Retry-After."""
        return float(min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class Settings:
    """Where data lives and how it is fetched. Build with :meth:`from_env`."""

    data_dir: Path
    shared_dirs: tuple[Path, ...] = ()
    mirrors: tuple[str, ...] = ()
    offline: bool = False
    progress: str = "auto"
    zenodo_url: str | None = None
    cernopendata_url: str | None = None
    zenodo_token: str | None = field(default=None, repr=False)
    retry: RetryPolicy = RetryPolicy()
    fsync: bool = True

    @classmethod
    def from_env(cls, path: str | os.PathLike[str] | None = None) -> Settings:
        """Settings from the environment; ``path`` (the ``load(path=...)`` argument) wins."""
        environ = os.environ
        if path is not None:
            data_dir = Path(path).expanduser()
        elif environ.get("PD4ML_DATA_DIR"):
            data_dir = Path(environ["PD4ML_DATA_DIR"]).expanduser()
        else:
            data_dir = Path(platformdirs.user_cache_dir("pd4ml", appauthor=False))
        shared = tuple(
            Path(part).expanduser()
            for part in environ.get("PD4ML_SHARED_DATA", "").split(os.pathsep)
            if part.strip()
        )
        mirrors = tuple(
            part for part in re.split(r"[\s,]+", environ.get("PD4ML_MIRROR", "")) if part
        )
        progress = environ.get("PD4ML_PROGRESS", "auto").strip().lower()
        if progress not in ("auto", "on", "off"):
            progress = "auto"
        return cls(
            data_dir=data_dir,
            shared_dirs=shared,
            mirrors=mirrors,
            offline=environ.get("PD4ML_OFFLINE", "").strip().lower() in _TRUE,
            progress=progress,
            zenodo_url=environ.get("PD4ML_ZENODO_URL") or None,
            cernopendata_url=environ.get("PD4ML_CERN_OPENDATA_URL") or None,
            zenodo_token=environ.get("PD4ML_ZENODO_TOKEN") or None,
        )

    def with_changes(self, **changes: object) -> Settings:
        """A copy with some fields replaced."""
        return replace(self, **changes)  # type: ignore[arg-type]
