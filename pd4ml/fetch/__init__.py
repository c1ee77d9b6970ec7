"""Fetching verified files: archives, mirrors, shared layers, resume, locks, stamps."""

from pd4ml.checksums import Checksum, hash_file
from pd4ml.fetch.fetcher import Expected, Fetcher, LocalFile, remedy

__all__ = ["Checksum", "Expected", "Fetcher", "LocalFile", "hash_file", "remedy"]
