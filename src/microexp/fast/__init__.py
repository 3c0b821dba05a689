"""The fast CPU path: the same mathematics as PyTorch's layers for MicroExpSTCNN's hot spots, several times faster
on CPU. :mod:`microexp.fast.conv` fuses conv -> ReLU -> max-pool, :mod:`microexp.fast.dense` the very wide Dense
layer and the dropouts, and :mod:`microexp.fast.kernels` holds their inner loops, compiled by numba.

Imported only by a model's forward when it takes the fast path (and numba only when a kernel first runs), so
looking up or building a model does not load it.
"""
