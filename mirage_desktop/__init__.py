"""Mirage Desktop: a webcam turned into a live animated avatar on a local GPU."""

__version__ = "0.1.0"
