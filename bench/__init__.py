"""bench: what image compression costs machine vision."""

__version__ = "0.1.0"
