"""The package version, in the lowest layer so any module can stamp its outputs with it."""

__version__ = "0.1.0"
