"""The package version (its own module, so low-level modules can read it without importing the package's API)."""

__version__ = "0.1.0"
