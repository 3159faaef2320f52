"""repro: claims from the classic CNN papers, measured and judged."""

__version__ = "0.1.0"
