"""Exceptions raised by pd4ml.

Every error says what happened and what to do next: which file, which checksum, which command
(``pd4ml urls NAME``, ``pd4ml import NAME DIR``) fixes it.
"""

from __future__ import annotations


class Pd4mlError(Exception):
    """Base class of every error raised by pd4ml."""


class UnknownNameError(Pd4mlError, KeyError):
    """A dataset, version or split name that does not exist (the message suggests the closest)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class ManifestError(Pd4mlError):
    """A dataset manifest file that does not follow the schema."""


class UnsafePathError(Pd4mlError, ValueError):
    """An archive file key that would escape the cache directory (``..``, absolute paths)."""


class DownloadError(Pd4mlError):
    """A file could not be obtained from any mirror or archive."""


class IntegrityError(DownloadError):
    """Downloaded or imported bytes that do not match the expected size or checksum."""


class ChecksumMismatchError(IntegrityError):
    """The checksum of a file differs from the published one."""


class SizeMismatchError(IntegrityError):
    """A file is shorter or longer than the published size."""


class HtmlResponseError(IntegrityError):
    """The server answered with an HTML page (an error or login page) instead of the file."""


class OfflineError(DownloadError):
    """``PD4ML_OFFLINE=1`` is set and a needed file is not in any local cache."""


class UnavailableError(DownloadError):
    """The dataset has no reachable public archive; the files must be provided by hand."""


class ConversionError(Pd4mlError):
    """A raw file could not be converted into arrays (wrong layout, truncated, corrupted)."""


class DiskFullError(Pd4mlError, OSError):
    """Not enough free disk space to write a file (the message names the path, the bytes needed
    and the bytes free, and says how to point ``PD4ML_DATA_DIR`` at a larger disk)."""


class CertificateError(DownloadError):
    """TLS certificate verification failed (not retried: the message names
    ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE``)."""


class DamagedCacheError(Pd4mlError):
    """A converted or prepared array in the cache is truncated or does not match the checksum
    recorded when it was written (the message says which command rebuilds it)."""


class RegistrationError(Pd4mlError, TypeError):
    """A dataset class that cannot be registered (no explicit ``name``, or a name taken)."""
