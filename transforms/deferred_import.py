"""Import a package only when it is used: transformers' tokenizers without torch.

``transformers.models.auto.tokenization_auto`` imports ``configuration_utils``,
which imports ``modeling_rope_utils``, which runs ``import torch`` whenever
torch is installed: about a second of start-up (and a few hundred MB) for a
tokenizer that never touches it. :func:`deferred` lets such imports bind a
stand-in instead; the first attribute read on the stand-in imports the real
package and forwards to it, so code that does use it still works, only later.
The stand-in is in ``sys.modules`` only inside the ``with`` block: an
``import torch`` after it (``poet train``, a reference model) is the ordinary one.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types


class _Deferred(types.ModuleType):
    """What ``import NAME`` binds inside :func:`deferred`; imports NAME on its first attribute read."""

    def __init__(self, name: str, spec):
        super().__init__(name)
        self.__spec__ = spec  # importlib.util.find_spec(NAME) reads it: the package stays "available"
        self.__path__ = list(spec.submodule_search_locations or [])

    def __getattr__(self, attribute: str):
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        module = importlib.import_module(name)
        self.__dict__.update(module.__dict__)  # later reads skip __getattr__
        return getattr(module, attribute)


@contextlib.contextmanager
def deferred(name: str):
    """Inside the block, ``import name`` binds a stand-in that imports ``name`` only when first used."""
    if name in sys.modules:
        yield
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        yield
        return
    stand_in = _Deferred(name, spec)
    sys.modules[name] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
