"""``python -m pd4ml.bench``."""

from __future__ import annotations

import sys

from pd4ml.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
