"""What benchmarks, training and the speed suite share about running a network on a device:
``timing`` (warm-up, synchronised repeats, percentiles), ``precision`` (the precision names and
autocast), ``device`` (which device, its name and versions). Depends on torch and repro.errors
only, so every layer above may use it.

One word, one meaning: *parallelism* is how one training run is spread over workers
(:data:`repro.runtime.vocabulary.PARALLEL`: DDP, FSDP, pipeline, AlexNet's towers), applied in
one place, :mod:`repro.train.parallelize`.
"""
