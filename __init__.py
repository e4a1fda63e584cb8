"""creditflow: open batch pipeline for B2B customer credit management."""

__version__ = "0.1.0"
