"""``python -m pd4ml.bench``: (dataset × model × seed) cells, trained and scored by one harness,
written as validated JSON records with provenance, and rendered as a leaderboard."""
