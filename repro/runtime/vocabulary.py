"""The names benchmarks and training share, without torch (the CLIs import them to parse):
the numeric precisions, and the parallelism strategies that spread one training run over its
workers (repro.train.parallelize applies them)."""

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
PARALLEL = ("none", "ddp", "fsdp", "pipeline", "towers")
