"""Name normalisation and "did you mean" hints for datasets, versions and splits."""

from __future__ import annotations

import difflib
import re


def normalise_name(name: str) -> str:
    """Case-, dash-, underscore- and space-insensitive: ``'Top-Tagging'`` → ``'toptagging'``."""
    return re.sub(r"[\s_\-.]", "", name).lower()


def closest_hint(wanted: str, candidates: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or ``""`` when nothing is close."""
    by_normal: dict[str, str] = {}
    for candidate in candidates:  # the first spelling of a name wins (the canonical one)
        by_normal.setdefault(normalise_name(candidate), candidate)
    matches = difflib.get_close_matches(normalise_name(wanted), list(by_normal), n=1, cutoff=0.5)
    return f"; did you mean {by_normal[matches[0]]!r}?" if matches else ""
