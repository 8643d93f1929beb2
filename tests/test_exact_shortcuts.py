"""The fast paths of tokenization are taken where they apply, and keep what they stand in for: the chat
template renders in jinja's sandbox as jinja ships it. (That they give TRL's ids: ``test_tokenization_trl.py``.)"""

from __future__ import annotations

import json

import pytest

from conftest import GPT2, MINIMIND, PHI3, SMOLLM2
from poet.transforms.exact_shortcuts import ChatRenderer, _config, rust_backend
from poet.transforms.tokenization import PairTokenizer, load_tokenizer


def test_a_chat_tokenizer_takes_the_shared_head_and_the_renderer_in_jinjas_own_sandbox():
    from jinja2.sandbox import SandboxedEnvironment

    tokenizer = PairTokenizer(load_tokenizer(str(SMOLLM2)))
    assert "<|im_start|>" in tokenizer._split_tokens
    environment = tokenizer._renderer.template.environment
    assert isinstance(environment, SandboxedEnvironment) and type(environment).__module__ == "jinja2.sandbox"
    assert "is_safe_attribute" not in vars(environment)  # the sandbox's check, not patched


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
def test_the_renderer_refuses_what_jinjas_sandbox_refuses(source):
    from jinja2.exceptions import SecurityError

    from poet.transforms.template_budget import RenderBudget
    from transformers.utils.chat_template_utils import _compile_jinja_template

    template = _compile_jinja_template(source)
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(SecurityError):
        template.render(messages=messages)
    budget = RenderBudget()
    overlay = template.environment.overlay()
    budget.install(overlay)
    with pytest.raises(SecurityError):  # the renderer, through the budget's hooks
        ChatRenderer(budget.compile(overlay, source), {}, budget).render([messages], False)
