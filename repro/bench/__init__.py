"""Benchmarks: how fast and how big each network runs on the hardware at hand."""
