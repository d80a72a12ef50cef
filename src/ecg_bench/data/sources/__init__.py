"""Base ECG dataset readers. Each yields ECGRecord; registered by name in SOURCES."""

# Load the registry first: a reader module imported on its own (e.g. ``...sources.cinc``) would otherwise
# start base.py's import of the built-in readers while itself only half-initialised.
from ecg_bench.data.sources import base as _base  # noqa: F401
