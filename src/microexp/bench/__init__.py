"""Everything ``microexp bench`` measures, one module per thing measured:

- :mod:`~microexp.bench.run`: the whole run in one process (:func:`run_bench`) and its text summary;
- :mod:`~microexp.bench.machine`: the machine's facts (CPU, flags, torch, allocator, load) and its fp32 matmul rate;
- :mod:`~microexp.bench.stcnn`: MicroExpSTCNN in detail, plain layers against the fast path, FLOP counts;
- :mod:`~microexp.bench.models`: every registered model (training, batch-8 and batch-1 inference, memory,
  roofline), from a data-driven table of per-model sizes (``REDUCED``, ``QUICK_SHAPES``);
- :mod:`~microexp.bench.precision`: bf16 against fp32;
- :mod:`~microexp.bench.tuning`: the autotuner's choices (:mod:`microexp.fast.tune`) at the bench's shapes;
- :mod:`~microexp.bench.keras`: microexp against the seeds' Keras models (``--vs-keras``);
- :mod:`~microexp.bench.stream`, :mod:`~microexp.bench.preprocess`, :mod:`~microexp.bench.spotting`: the streamed
  video predictor, preprocessing, spotting on a long video;
- :mod:`~microexp.bench.timing`: alternated A/B timing and its summary (median, min-max spread).
"""

from microexp.bench.run import run_bench, summary

__all__ = ["run_bench", "summary"]
