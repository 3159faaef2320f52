"""Training: single-device loop code, parallelism applied in one place, Ray Train to run it."""
