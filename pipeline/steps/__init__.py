"""The Beam PTransforms and DoFns that ``poet prepare`` and ``poet score`` are made of.

Every step keeps to what Beam's Dask runner translates (see :mod:`.gather`): no tagged outputs, no side
inputs, nothing emitted from ``finish_bundle``.
"""
