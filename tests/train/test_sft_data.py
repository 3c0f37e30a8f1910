"""SFT records: Alpaca, chat and prompt/completion shapes, clear errors, and response-only labels."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from leptonkit.errors import InvalidInputError
from leptonkit.train.packing import IGNORE_INDEX
from leptonkit.train.sft_data import encode_conversation, encode_conversations, load_conversations, to_messages
from leptonkit.train.tokenizer import IM_END, train_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    text = "Write a poem about the sea. The sea is blue and wide. Name a colour. Red is a colour of fire. " * 20
    return train_tokenizer([text], vocab_size=300)


def test_alpaca_prompt_completion_and_chat_records_become_messages():
    alpaca = to_messages({"instruction": "Translate.", "input": "Bonjour", "output": "Hello"}, "a")
    assert alpaca == [{"role": "user", "content": "Translate.\n\nBonjour"}, {"role": "assistant", "content": "Hello"}]
    no_input = to_messages({"instruction": "Name a colour.", "input": "", "output": "Red"}, "a")
    assert no_input[0]["content"] == "Name a colour."
    pair = to_messages({"prompt": "2+2=", "completion": "4"}, "p")
    assert pair == [{"role": "user", "content": "2+2="}, {"role": "assistant", "content": "4"}]
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]
    assert to_messages({"messages": chat}, "c") == chat


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"instruction": "Say hi.", "input": ""}, r"data.jsonl:3: record has no 'output'"),
        ({"instruction": "Say hi.", "output": "  "}, "record has no 'output'"),
        ({"prompt": "Say hi."}, "record has no 'completion'"),
        ({"messages": [{"role": "robot", "content": "beep"}]}, "message 0 has unknown role 'robot'"),
        ({"messages": [{"role": "user", "content": "Hi"}]}, "no assistant message"),
        ({"messages": []}, "non-empty list"),
        ({"text": "plain"}, r"unknown SFT record shape with keys \['text'\]"),
    ],
)
def test_bad_records_are_one_clear_error_naming_the_line(record, message):
    with pytest.raises(InvalidInputError, match=message):
        to_messages(record, "data.jsonl:3")


def test_files_in_json_and_jsonl_are_read_and_errors_name_the_line(tmp_path):
    array = tmp_path / "alpaca.json"
    array.write_text(json.dumps([{"instruction": "Name a colour.", "input": "", "output": "Red"}] * 3))
    assert len(load_conversations(array)) == 3
    lines = tmp_path / "chat.jsonl"
    lines.write_text('{"prompt": "a", "completion": "b"}\n\n{"prompt": "c"}\n')
    with pytest.raises(InvalidInputError, match=r"chat.jsonl:3: record has no 'completion'"):
        load_conversations(lines)


def test_jsonl_whose_strings_hold_unicode_line_ends_is_read_line_by_line(tmp_path):
    """U+0085, U+2028 and U+2029 are raw in JSON written with ``ensure_ascii=False``; only "\n" ends a JSON line."""
    text = "a\x85b\u2028c\u2029d"
    lines = tmp_path / "chat.jsonl"
    record = json.dumps({"prompt": text, "completion": text}, ensure_ascii=False)
    lines.write_text(f"{record}\r\n{record}\n", encoding="utf-8", newline="")
    conversations = load_conversations(lines)
    assert len(conversations) == 2 and all(m["content"] == text for c in conversations for m in c)


def test_only_response_tokens_carry_labels(tokenizer):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Red"},
        {"role": "user", "content": "Another?"},
        {"role": "assistant", "content": "Blue"},
    ]
    ids, labels = encode_conversation(tokenizer, messages)
    assert len(ids) == len(labels)
    kept = [label for label in labels if label != IGNORE_INDEX]
    assert tokenizer.decode(kept) == f"Red{IM_END}Blue{IM_END}"  # both replies and their turn ends, nothing else
    prompt_len = len(
        tokenizer.apply_chat_template(messages[:2], add_generation_prompt=True, tokenize=True, return_dict=True)[
            "input_ids"
        ]
    )
    assert all(label == IGNORE_INDEX for label in labels[:prompt_len])  # system + user prompt: all -100
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(ids, labels, strict=True))


CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Red"},
    {"role": "user", "content": "Another?"},
    {"role": "assistant", "content": "Blue"},
]


def test_a_template_without_generation_markers_labels_the_same_tokens(tokenizer):
    """Most Hub templates have no {% generation %}: the replies are found by rendering with and without each one,
    and the labels are exactly those the marked template gives."""
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = re.sub(r"\{% (end)?generation %\}", "", tokenizer.chat_template)
    assert plain.chat_template != tokenizer.chat_template
    assert encode_conversation(plain, CONVERSATION) == encode_conversation(tokenizer, CONVERSATION)


def test_a_template_that_rewrites_earlier_turns_is_refused(tokenizer):
    rewriting = copy.deepcopy(tokenizer)  # shows only the last user turn: a reply shifts what came before it
    rewriting.chat_template = (
        "{% for m in messages %}{% if m.role != 'user' or loop.last or messages[loop.index0 + 1:] | "
        "selectattr('role', 'eq', 'user') | list | length == 0 %}{{ m.role + ': ' + m.content + '\\n' }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    )
    with pytest.raises(InvalidInputError, match="renders earlier turns differently"):
        encode_conversation(rewriting, CONVERSATION)


def test_long_conversations_are_cut_and_counted(tokenizer):
    short = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    long = [{"role": "user", "content": "The sea is blue and wide. " * 30}, {"role": "assistant", "content": "Yes"}]
    encoded = encode_conversations(tokenizer, [short, long], max_length=32)
    assert encoded.truncated == 1
    assert encoded.without_response == 1  # the cut removed the whole reply: dropped, and counted
    assert len(encoded.examples) == 1


def test_example_recipes_validate():
    from leptonkit.train.recipe import load_recipe

    examples = Path(__file__).resolve().parents[2] / "examples" / "recipes"
    pretrain = load_recipe(examples / "pretrain_tinystories.yaml")
    assert (pretrain.stage, pretrain.pretrain.preset, pretrain.train.max_minutes) == ("pretrain", "tiny", 10)
    assert Path(pretrain.data).is_file()  # resolved from the recipe's folder
    sft = load_recipe(examples / "sft_chat.yaml")
    assert (sft.stage, sft.method, sft.lora.r, sft.sft.packing) == ("sft", "lora", 16, False)
