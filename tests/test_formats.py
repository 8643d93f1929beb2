"""Every supported input format normalises to TRL's form, and every bad row gets its reason code."""

import json

import pytest

from poet.transforms.formats import detect_format, extract_prompt, normalize
from poet.transforms.reasons import Reason, RowRejected

SKY = [{"role": "user", "content": "What color is the sky?"}]
BLUE = [{"role": "assistant", "content": "It is blue."}]
GREEN = [{"role": "assistant", "content": "It is green."}]


def rejected(record, fmt=None) -> Reason:
    with pytest.raises(RowRejected) as info:
        normalize(record, fmt)
    return info.value.reason


def test_standard():
    pair = normalize({"prompt": "The sky is", "chosen": " blue.", "rejected": " green."})
    assert (pair.prompt, pair.chosen, pair.rejected) == ("The sky is", " blue.", " green.")
    assert not pair.conversational


def test_conversational_keeps_only_role_and_content():
    record = {"prompt": [{**SKY[0], "name": "x"}], "chosen": BLUE, "rejected": GREEN}
    pair = normalize(record)
    assert detect_format(record) == "conversational"
    assert pair.prompt == SKY and pair.chosen == BLUE and pair.rejected == GREEN


def test_implicit_prompt_conversational_like_trl():
    pair = normalize({"chosen": SKY + BLUE, "rejected": SKY + GREEN})
    assert (pair.prompt, pair.chosen, pair.rejected) == (SKY, BLUE, GREEN)


def test_implicit_prompt_text_moves_the_space_to_the_completions_like_trl():
    pair = normalize({"chosen": "The sky is blue.", "rejected": "The sky is green."})
    assert (pair.prompt, pair.chosen, pair.rejected) == ("The sky is", " blue.", " green.")


def test_implicit_prompt_when_one_side_is_a_prefix_follows_trls_loop():
    # trl.extract_prompt ends its loop without break: the split is the last common position
    pair = extract_prompt("Say hi", "Say hi there")
    assert (pair.prompt, pair.chosen, pair.rejected) == ("Say h", "i", "i there")


def test_ultrafeedback_ignores_text_prompt_and_splits_the_conversations():
    record = {"prompt": "What color is the sky?", "chosen": SKY + BLUE, "rejected": SKY + GREEN,
              "score_chosen": 8.0, "score_rejected": 3.0}
    assert detect_format(record) == "ultrafeedback"
    pair = normalize(record)
    assert (pair.prompt, pair.chosen, pair.rejected) == (SKY, BLUE, GREEN)


def test_hh_rlhf_multi_turn_like_trls_script():
    head = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Sky color?\n\nAssistant:"
    pair = normalize({"chosen": head + " Blue.", "rejected": head + " Green, maybe."})
    assert pair.prompt == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Sky color?"},
    ]
    assert pair.chosen == [{"role": "assistant", "content": "Blue."}]
    assert pair.rejected == [{"role": "assistant", "content": "Green, maybe."}]


def test_hh_rlhf_cuts_common_start_back_to_the_last_assistant_turn():
    head = "\n\nHuman: Sky color?\n\nAssistant: "
    pair = normalize({"chosen": head + "It is blue.", "rejected": head + "It is green."})
    assert pair.chosen == [{"role": "assistant", "content": "It is blue."}]
    assert pair.prompt == [{"role": "user", "content": "Sky color?"}]


def test_sharegpt_with_system():
    record = {
        "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hey"},
                          {"from": "human", "value": "Sky?"}],
        "chosen": {"from": "gpt", "value": "Blue"},
        "rejected": {"from": "gpt", "value": "Green"},
        "system": "Be brief.",
    }
    pair = normalize(record)
    assert [m["role"] for m in pair.prompt] == ["system", "user", "assistant", "user"]
    assert pair.prompt[0]["content"] == "Be brief."
    assert pair.chosen == [{"role": "assistant", "content": "Blue"}]


def test_forced_format_is_used():
    record = {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}
    assert not normalize(record, "implicit_prompt").conversational
    assert normalize(record).conversational


@pytest.mark.parametrize(
    "record, reason",
    [
        ([1, 2], Reason.UNKNOWN_FORMAT),
        ({"text": "hello"}, Reason.UNKNOWN_FORMAT),
        ({"prompt": "p", "chosen": "c"}, Reason.MISSING_FIELD),
        ({"prompt": "p", "chosen": "c", "rejected": None}, Reason.MISSING_FIELD),
        ({"prompt": " ", "chosen": "c", "rejected": "r"}, Reason.EMPTY_PROMPT),
        ({"prompt": "p", "chosen": "", "rejected": "r"}, Reason.EMPTY_RESPONSE),
        ({"prompt": "p", "chosen": "same", "rejected": "same"}, Reason.IDENTICAL_RESPONSES),
        ({"prompt": "p", "chosen": "c", "rejected": 3}, Reason.NON_TEXT_CONTENT),
        ({"prompt": SKY, "chosen": [{"role": "assistant", "content": [{"type": "image"}]}], "rejected": GREEN},
         Reason.NON_TEXT_CONTENT),
        ({"prompt": SKY, "chosen": [{"role": "user", "content": "x"}], "rejected": GREEN}, Reason.BAD_ROLE_ORDER),
        ({"prompt": SKY + BLUE, "chosen": BLUE, "rejected": GREEN}, Reason.BAD_ROLE_ORDER),
        ({"prompt": [{"role": "wizard", "content": "x"}], "chosen": BLUE, "rejected": GREEN}, Reason.BAD_ROLE_ORDER),
        ({"conversations": [{"from": "function_call", "value": "x"}], "chosen": {"from": "gpt", "value": "a"},
          "rejected": {"from": "gpt", "value": "b"}}, Reason.BAD_ROLE_ORDER),
        ({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: b"},
         Reason.IDENTICAL_RESPONSES),
        ({"chosen": "\n\nHuman: tell me\n\nAssistant: yes", "rejected": "\n\nHuman: tell us"}, Reason.BAD_ROLE_ORDER),
    ],
)
def test_bad_rows_get_their_reason(record, reason):
    assert rejected(record) == reason


def test_content_id_is_stable_across_formats():
    standard = normalize({"prompt": "The sky is", "chosen": " blue.", "rejected": " green."})
    implicit = normalize({"chosen": "The sky is blue.", "rejected": "The sky is green."})
    assert standard.content_id() == implicit.content_id()
    assert standard.content_id() != normalize(
        {"prompt": "The sky is", "chosen": " green.", "rejected": " blue."}).content_id()
    assert json.loads(json.dumps(standard.content_id())) == standard.content_id()
