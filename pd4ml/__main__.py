"""``python -m pd4ml``: the command-line interface (see :mod:`pd4ml.cli`)."""

from pd4ml.cli import main

raise SystemExit(main())
