"""POET and max-length truncation: edge cases and invariants (hypothesis)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poet.transforms.reasons import Reason, RowRejected
from poet.transforms.tokenization import TokenizedPair
from poet.transforms.truncation import poet_truncate, truncate_pair

EOS = 0


def pair(prompt, chosen, rejected):
    return TokenizedPair(list(prompt), list(chosen), list(rejected))


def test_equal_lengths_are_untouched():
    out = truncate_pair(pair([1, 2], [3, 4, EOS], [5, 6, EOS]), max_length=None)
    assert out.chosen_ids == [3, 4, EOS] and out.rejected_ids == [5, 6, EOS]
    assert out.poet_length == 3


def test_longer_side_is_cut_and_loses_its_eos_without_re_append():
    out = truncate_pair(pair([1], [3, EOS], [5, 6, 7, EOS]), max_length=None)
    assert out.chosen_ids == [3, EOS]
    assert out.rejected_ids == [5, 6]  # EOS counted in L, not re-appended
    assert (out.chosen_length_orig, out.rejected_length_orig, out.poet_length) == (2, 4, 2)


def test_prompt_is_never_touched_by_poet():
    out = truncate_pair(pair([9, 8, 7], [3, EOS], [5, 6, 7, EOS]), max_length=None)
    assert out.prompt_ids == [9, 8, 7]


def test_no_poet_keeps_both_completions():
    out = truncate_pair(pair([1], [3, EOS], [5, 6, 7, EOS]), max_length=None, poet=False)
    assert out.rejected_ids == [5, 6, 7, EOS] and out.poet_length == 2


def test_max_length_runs_before_poet():
    # room for 3 completion tokens: chosen 5 -> 3, rejected 4 -> 3, then POET min(3, 3) = 3
    out = truncate_pair(pair([1, 2], [3, 4, 5, 6, EOS], [7, 8, 9, EOS]), max_length=5)
    assert out.chosen_ids == [3, 4, 5] and out.rejected_ids == [7, 8, 9]
    assert out.poet_length == 3 and out.completion_room == 3


def test_max_prompt_length_keeps_the_last_prompt_tokens():
    out = truncate_pair(pair([1, 2, 3, 4], [5, EOS], [6, EOS]), max_length=None, max_prompt_length=2)
    assert out.prompt_ids == [3, 4]


def test_prompt_filling_max_length_is_rejected():
    with pytest.raises(RowRejected) as info:
        truncate_pair(pair([1, 2, 3], [5, EOS], [6, EOS]), max_length=3)
    assert info.value.reason == Reason.PROMPT_TOO_LONG


def test_one_empty_side_leaves_no_signal():
    with pytest.raises(RowRejected) as info:
        truncate_pair(pair([1], [], [5, 6, EOS]), max_length=None)
    assert info.value.reason == Reason.IDENTICAL_AFTER_TRUNCATION


def test_prefix_completion_is_identical_after_poet():
    with pytest.raises(RowRejected) as info:
        truncate_pair(pair([1], [5, 6], [5, 6, 7, EOS]), max_length=None)
    assert info.value.reason == Reason.IDENTICAL_AFTER_TRUNCATION


ids = st.lists(st.integers(0, 50), max_size=40)


@settings(max_examples=300, deadline=None)
@given(ids, ids, ids, st.one_of(st.none(), st.integers(1, 60)), st.one_of(st.none(), st.integers(1, 30)),
       st.booleans())
def test_truncation_invariants(prompt, chosen, rejected, max_length, max_prompt_length, poet):
    try:
        out = truncate_pair(pair(prompt, chosen, rejected), max_length=max_length,
                            max_prompt_length=max_prompt_length, poet=poet)
    except RowRejected as err:
        assert err.reason in (Reason.PROMPT_TOO_LONG, Reason.IDENTICAL_AFTER_TRUNCATION)
        return
    # the prompt is a suffix of the original prompt, within its limit
    assert prompt[len(prompt) - out.prompt_length:] == out.prompt_ids
    if max_prompt_length:
        assert out.prompt_length <= max_prompt_length
    # completions are prefixes of the originals
    assert chosen[: len(out.chosen_ids)] == out.chosen_ids
    assert rejected[: len(out.rejected_ids)] == out.rejected_ids
    cap = max_length - out.prompt_length if max_length else max(len(chosen), len(rejected))
    assert out.poet_length == min(len(chosen), len(rejected), cap)
    if max_length:
        assert out.prompt_length + max(len(out.chosen_ids), len(out.rejected_ids)) <= max_length
    if poet:
        assert len(out.chosen_ids) == len(out.rejected_ids) == out.poet_length
    else:
        assert len(out.chosen_ids) == min(len(chosen), cap) and len(out.rejected_ids) == min(len(rejected), cap)
    assert out.chosen_ids != out.rejected_ids


@given(ids, ids)
def test_poet_truncate_is_the_shorter_length(chosen, rejected):
    c, r = poet_truncate(chosen, rejected)
    assert len(c) == len(r) == min(len(chosen), len(rejected))
