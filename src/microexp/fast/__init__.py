"""The fast CPU path: the same mathematics as PyTorch's layers for the Reddy models' hot spots (MicroExpSTCNN and
both MicroExpFuseNets), several times faster on CPU. :mod:`microexp.fast.conv` fuses conv -> ReLU -> max-pool (->
dropout), :mod:`microexp.fast.dense` the very wide Dense layers, :mod:`microexp.fast.dropout` the dropouts, and
:mod:`microexp.fast.kernels` holds their inner loops, compiled by numba. :mod:`microexp.fast.tune` chooses among
each op's candidate implementations (these, oneDNN in channels-last, the plain layers; in bf16 under the ``bf16``
precision) by timing them on the machine the first time a shape runs, and remembers the winner.

The submodules are imported only by a model's forward when it takes the fast path (and numba only when a kernel
first runs), so looking up or building a model does not load them (:func:`microexp.models.stcnn.fast_path` is the
one check).
"""
