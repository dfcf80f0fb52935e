"""``tunelab chat``: talk to a run in the terminal, with the same engine the server uses.

Each line is a user turn; the whole conversation is rendered as the run was trained and the
reply is streamed as it is decoded. ``/reset`` forgets the conversation, ``/adapter NAME``
switches to another served name (and starts afresh), ``/models`` lists them, ``/exit`` (or
end of input) leaves.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from tunelab.decoding import Sampling
from tunelab.errors import TunelabError
from tunelab.inference import encode_messages
from tunelab.serving.engine import Engine, load_engine
from tunelab.serving.jobs import Delta, Event, Failed, Job

PROMPT = "you> "
REPLY = "assistant> "
HELP = "commands: /reset, /adapter NAME, /models, /exit"


class Chat:
    """A conversation with one of an engine's names."""

    def __init__(
        self, engine: Engine, model: str, max_tokens: int, sampling: Sampling, out: TextIO
    ) -> None:
        self.engine, self.max_tokens, self.sampling, self.out = engine, max_tokens, sampling, out
        self.model = model
        self.history: list[dict[str, str]] = []

    def handle(self, line: str) -> bool:
        """Answer one input line; False when the user leaves."""
        text = line.strip()
        if not text:
            return True
        if text in ("/exit", "/quit"):
            return False
        if text.startswith("/"):
            self._command(text)
            return True
        self.history.append({"role": "user", "content": text})
        reply = self.reply()
        self.history.append({"role": "assistant", "content": reply})
        return True

    def reply(self) -> str:
        """Decode the assistant's next turn, printing it as it comes; returns it stripped."""
        slot = self.engine.slots[self.model]
        prompt = encode_messages(slot.loaded, self.history)
        limit = slot.limit
        if limit is not None and len(prompt) + self.max_tokens > limit:
            self.history.pop()
            raise TunelabError(
                f"the conversation has {len(prompt)} tokens; with {self.max_tokens} new ones it "
                f"is over the model's {limit}-token limit: /reset"
            )
        parts: list[str] = []
        self.out.write(REPLY)
        self.out.flush()

        def show(event: Event) -> None:
            if isinstance(event, Delta):
                printed = len("".join(parts).lstrip())
                parts.append(event.text)
                self.out.write("".join(parts).lstrip()[printed:])
                self.out.flush()
            elif isinstance(event, Failed):
                raise TunelabError(event.message)

        job = Job(
            slot, "generate", show, [prompt], max_tokens=self.max_tokens, sampling=self.sampling
        )
        self.engine.run([job])
        self.out.write("\n")
        return "".join(parts).strip()

    def _command(self, text: str) -> None:
        word, _, arg = text.partition(" ")
        if word == "/reset":
            self.history = []
            self._say("(conversation cleared)")
        elif word == "/adapter" and arg.strip():
            name = arg.strip()
            if name not in self.engine.slots:
                self._say(f"no model {name!r}; served: {', '.join(self.engine.slots)}")
                return
            self.model, self.history = name, []
            self._say(f"(now talking to {name}; conversation cleared)")
        elif word == "/models":
            self._say(", ".join(self.engine.slots))
        else:
            self._say(HELP)

    def _say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


def chat_cli(
    run_dir: str | Path,
    adapters: dict[str, Path] | None = None,
    max_tokens: int = 128,
    sampling: Sampling | None = None,
    read: Callable[[str], str] = input,
    out: TextIO = sys.stdout,
) -> None:
    """The interactive loop: load the run, then answer lines until /exit or end of input."""
    engine = load_engine(run_dir, adapters)
    chat = Chat(engine, next(iter(engine.slots)), max_tokens, sampling or Sampling(), out)
    if engine.slots[chat.model].task == "classification":
        raise TunelabError(
            f"{run_dir}: a classifier; chat needs a generative run (tunelab predict classifies)"
        )
    out.write(f"chatting with {chat.model} ({HELP})\n")
    while True:
        try:
            line = read(PROMPT)
        except EOFError:
            out.write("\n")
            return
        try:
            if not chat.handle(line):
                return
        except TunelabError as exc:
            out.write(f"\nerror: {exc}\n")
