"""``tunelab chat`` driven as a terminal program (pexpect): history, /reset, /adapter NAME."""

from __future__ import annotations

import sys

import pexpect

import tunelab
from serve_helpers import cli_env, make_run

LORA = {"name": "lora", "lora": {"r": 4}}


def reply(child, line: str) -> str:
    """Send a line; the reply printed between ``assistant> `` and the next prompt."""
    child.sendline(line)
    child.expect_exact("you> ")
    text = child.before.replace("\r\n", "\n")
    return text.split("assistant> ", 1)[1].rsplit("\n", 1)[0].strip()


def test_chat_keeps_history_resets_and_switches_adapter(tmp_path, tiny_llama_dir):
    a = make_run(tiny_llama_dir, tmp_path / "a", "causal_lm", LORA, 1)
    b = make_run(tiny_llama_dir, tmp_path / "b", "causal_lm", LORA, 2)
    cmd = ["-m", "tunelab.cli", "chat", str(a), "--adapter", f"b={b}", "--max-tokens", "12"]
    child = pexpect.spawn(sys.executable, cmd, env=cli_env(), encoding="utf-8", timeout=240)
    child.expect_exact("you> ")
    first = reply(child, "hello")
    second = reply(child, "good morning")
    child.sendline("/reset")
    child.expect_exact("(conversation cleared)")
    child.expect_exact("you> ")
    fresh = reply(child, "good morning")
    child.sendline("/adapter b")
    child.expect_exact("(now talking to b")
    child.expect_exact("you> ")
    other = reply(child, "hello")
    child.sendline("/exit")
    child.expect(pexpect.EOF)

    loaded_a, loaded_b = tunelab.load(a), tunelab.load(b)
    history = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": first},
        {"role": "user", "content": "good morning"},
    ]
    expected = tunelab.predict(
        loaded_a, ["hello", {"messages": history}, "good morning"], max_new_tokens=12
    )
    assert [first, second, fresh] == [row["generated"] for row in expected]
    assert second != fresh  # the second turn saw the history
    assert other == tunelab.predict(loaded_b, ["hello"], max_new_tokens=12)[0]["generated"]
