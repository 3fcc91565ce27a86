"""Backends and precisions as suite variants.

A variant may run the pipeline's stage modules in another precision (``fp16``, ``bf16``,
weights cast or autocast), under another backend (``compile``: torch.compile;
``onnxruntime``; ``openvino``) and/or quantised (``int8-dynamic``). The worker applies the
variant to the loaded pipeline (:func:`benchrunner.backends.apply.apply_variant`) before
it measures anything, and records what that cost (export, quantisation, compilation,
first call) and how large the result is, apart from the measured repeats.

One small module per backend behind one interface (:class:`~.base.Backend`), registered
in :mod:`.registry`. What a variant may ask for (:class:`benchrunner.suite.VariantSpec`) is
defined with the suite, which sits below this package.
"""
