"""The Beam side of poet, in four rooms.

* :mod:`pipeline.commands`: the ``poet`` console script, one module per sub-command, and its argument parsing.
* :mod:`pipeline.steps`: the Beam PTransforms and DoFns a job is made of (what runs on workers).
* :mod:`pipeline.launch`: what runs once on the launching machine: the input plan, the runner, the staging
  folder and its commit.
* :mod:`pipeline.hub`: the Hugging Face Hub: ``hf://`` inputs, downloads of prepared folders, publishing.

The per-row logic they drive is Beam-free, in :mod:`transforms`.
"""
