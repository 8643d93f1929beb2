"""The fast paths of tokenization are taken where they apply, and keep what they stand in for: the chat
template's sandbox refuses what jinja's refuses. (That they give TRL's ids: ``test_tokenization_trl.py``.)"""

from __future__ import annotations

import collections
import json

import pytest

from conftest import GPT2, MINIMIND, PHI3, SMOLLM2
from poet.transforms.exact_shortcuts import _SafeAttributeMemo, _config, rust_backend
from poet.transforms.tokenization import PairTokenizer, load_tokenizer


def test_a_chat_tokenizer_takes_the_shared_head_and_the_memoized_renderer():
    tokenizer = PairTokenizer(load_tokenizer(str(SMOLLM2)))
    assert "<|im_start|>" in tokenizer._split_tokens
    assert isinstance(tokenizer._renderer.template.environment.is_safe_attribute, _SafeAttributeMemo)


@pytest.mark.parametrize("path", [SMOLLM2, MINIMIND, PHI3, GPT2], ids=["smollm2", "minimind", "phi3", "gpt2"])
def test_component_configs_are_those_of_tokenizer_json(path):
    backend = rust_backend(load_tokenizer(str(path)))
    whole = json.loads(backend.to_str())
    assert _config(backend.normalizer) == whole["normalizer"]
    assert _config(backend.pre_tokenizer) == whole["pre_tokenizer"]


@pytest.mark.parametrize("source", [
    "{{ messages.__class__.__mro__ }}",  # a private attribute
    "{{ messages.append(1) }}",  # a method that changes a list (the immutable sandbox)
    "{{ messages[0].pop('role') }}",  # ... or a dict
    "{% for m in messages %}{{ loop.__init__.__globals__ }}{% endfor %}",
    "{{ messages[0].content.__class__.__subclasses__() }}",
])
def test_the_memoized_sandbox_refuses_what_jinjas_refuses(source):
    from jinja2.exceptions import SecurityError

    from poet.transforms.template_budget import RenderBudget
    from transformers.utils.chat_template_utils import _compile_jinja_template

    environment = _compile_jinja_template(source).environment
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(SecurityError):
        environment.from_string(source).render(messages=messages)
    fast = _SafeAttributeMemo.compile(environment, source, RenderBudget())  # the budget's hooks refuse it too
    assert isinstance(fast.environment.is_safe_attribute, _SafeAttributeMemo)
    for _ in range(2):  # the second time, from the memo
        with pytest.raises(SecurityError):
            fast.render(messages=messages)


def test_the_memo_gives_jinjas_answer_for_every_class_and_attribute():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def generator():
        yield 1

    class Impostor:  # reports another class than its type: never memoized
        __class__ = list

    environment = ImmutableSandboxedEnvironment()
    memo = _SafeAttributeMemo(environment.is_safe_attribute)
    objects = [[], {}, set(), collections.deque(), "text", 3, (1, 2), str.upper, "x".upper, generator,
               generator(), int, generator.__code__, Impostor(), Impostor()]
    names = ["append", "pop", "clear", "update", "add", "keys", "items", "upper", "format", "mro", "real",
             "gi_frame", "gi_code", "__code__", "__globals__", "__class__", "_private", "first", "content"]
    for _ in range(2):
        for obj in objects:
            for name in names:
                assert memo(obj, name, None) == environment.is_safe_attribute(obj, name, None), (obj, name)
    assert all(kind is not Impostor for kind, _ in memo.known)
