"""``python -m ecg_bench``: the ``ecg-bench`` command."""

import sys

from ecg_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
