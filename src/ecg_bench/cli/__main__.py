"""``python -m ecg_bench.cli``: the ``ecg-bench`` command (as ``python -m ecg_bench``)."""

import sys

from ecg_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
