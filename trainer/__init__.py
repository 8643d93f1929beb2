"""Reference trainer for prepared preference shards: DPO, SimPO and AlphaPO (`poet train`).

Modules: ``losses`` (the three losses, pure functions), ``config`` (hyper-parameters and their checks),
``data`` (loading a split, batch plan, collation), ``logps`` (completion log-probs in one forward pass),
``model`` (loading models and tokenizers), ``metrics``, ``checkpoint``, ``plots``, ``train`` (the loop)
and ``cli`` (the ``poet train`` sub-command).
"""
