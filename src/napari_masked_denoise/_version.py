"""The package version, importable by every layer without importing a front end."""

__version__ = "0.1.0"
