"""Our batched tokenization gives, row for row, the ids TRL 1.x's DPOTrainer produces."""

import pytest

from conftest import GPT2, HH_SAMPLE, MINIMIND, PHI3, SHAREGPT_SAMPLE, SMOLLM2, read_pairs, trl_reference_ids
from poet.transforms.formats import PreferencePair
from poet.transforms.formats import common_prefix_length
from poet.transforms.tokenization import PairTokenizer, load_tokenizer


def assert_same_as_trl(tokenizer, pairs):
    ours = PairTokenizer(tokenizer).encode(pairs)
    reference = trl_reference_ids(tokenizer, pairs)
    assert len(ours) == len(reference) == len(pairs)
    for i, (mine, theirs) in enumerate(zip(ours, reference)):
        assert mine.prompt_ids == theirs["prompt_ids"], f"row {i} prompt"
        assert mine.chosen_ids == theirs["chosen_ids"], f"row {i} chosen"
        assert mine.rejected_ids == theirs["rejected_ids"], f"row {i} rejected"


@pytest.mark.parametrize("tokenizer_path", [SMOLLM2, MINIMIND, PHI3], ids=["smollm2", "minimind", "phi3"])
@pytest.mark.parametrize("data", [HH_SAMPLE, SHAREGPT_SAMPLE], ids=["hh-rlhf", "sharegpt"])
def test_conversational_ids_equal_trl(tokenizer_path, data):
    assert_same_as_trl(load_tokenizer(str(tokenizer_path)), read_pairs(data, limit=300))


@pytest.mark.parametrize("tokenizer_path", [GPT2, PHI3, SMOLLM2], ids=["gpt2", "phi3", "smollm2"])
def test_plain_text_ids_equal_trl(tokenizer_path):
    # HH transcripts read as implicit-prompt text: the prompt is the character-level shared prefix
    pairs = read_pairs(HH_SAMPLE, fmt="implicit_prompt", limit=300)
    standard = [PreferencePair("Question: why is the sky blue?\nAnswer:", " Rayleigh scattering.", " Because.")]
    assert_same_as_trl(load_tokenizer(str(tokenizer_path)), pairs + standard)


def test_plain_text_eos_is_appended_once():
    tokenizer = load_tokenizer(str(GPT2))
    eos = tokenizer.eos_token
    [with_eos, without] = PairTokenizer(tokenizer).encode(
        [PreferencePair("Q:", " yes" + eos, " no" + eos), PreferencePair("Q:", " yes", " no")]
    )
    assert with_eos == without
    assert with_eos.chosen_ids[-1] == tokenizer.eos_token_id
    assert with_eos.chosen_ids.count(tokenizer.eos_token_id) == 1


def test_common_prefix_length():
    assert common_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2
    assert common_prefix_length([], [1]) == 0


@pytest.mark.parametrize("kind", [list, str])
def test_common_prefix_length_is_the_first_difference(kind):
    import random

    def by_definition(a, b):
        return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))

    rng = random.Random(0)
    for _ in range(3000):
        a = [rng.randint(0, 2) for _ in range(rng.randint(0, 40))]
        b = a[:rng.randint(0, len(a))] + [rng.randint(0, 2) for _ in range(rng.randint(0, 6))]
        if kind is str:
            a, b = "".join(map(str, a)), "".join(map(str, b))
        assert common_prefix_length(a, b) == common_prefix_length(b, a) == by_definition(a, b)
