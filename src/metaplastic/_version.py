"""The package version (one place; metaplastic.__version__)."""

__version__ = "0.1.0"
