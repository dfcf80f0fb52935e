"""Render conversations as text: the tokenizer's chat template, or tunelab's default template.

The default template (used when the tokenizer has no chat template, or ``data.template:
default``) writes one block per message and ends every assistant turn with the EOS token::

    ### System:
    {system}

    ### User:
    {user}

    ### Assistant:
    {assistant}</s>

"""

from __future__ import annotations

from typing import Any

from tunelab.errors import TunelabError

HEADERS = {"system": "### System:\n", "user": "### User:\n", "assistant": "### Assistant:\n"}

Messages = list[dict[str, str]]


def default_render(messages: Messages, eos: str, add_generation_prompt: bool) -> str:
    """Render ``messages`` with tunelab's default template."""
    parts = []
    for message in messages:
        end = eos if message["role"] == "assistant" else ""
        parts.append(f"{HEADERS[message['role']]}{message['content']}{end}\n\n")
    if add_generation_prompt:
        parts.append(HEADERS["assistant"])
    return "".join(parts)


class ChatRenderer:
    """Renders conversations and finds the character span of every assistant turn."""

    def __init__(self, tokenizer: Any, template: str, chat_template: str | None = None) -> None:
        """``chat_template`` (a stored one) replaces the tokenizer's when ``template`` is auto."""
        self.tokenizer = tokenizer
        auto = template == "auto"
        own = tokenizer.get_chat_template() if auto and tokenizer.chat_template else None
        self.chat_template: str | None = (chat_template if auto else None) or own
        self.uses_chat_template = bool(self.chat_template)
        self.eos = tokenizer.eos_token or ""

    @property
    def add_special_tokens(self) -> bool:
        """Chat templates write their own special tokens; the default template does not."""
        return not self.uses_chat_template

    def render(self, messages: Messages, add_generation_prompt: bool = False) -> str:
        """The conversation as one string."""
        if self.uses_chat_template:
            return self.tokenizer.apply_chat_template(
                messages,
                chat_template=self.chat_template,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
            )
        return default_render(messages, self.eos, add_generation_prompt)

    def prompt(self, messages: Messages) -> str:
        """The conversation up to the generation prompt of the last assistant turn."""
        return self.render(messages[: last_assistant(messages)], add_generation_prompt=True)

    def render_with_spans(self, messages: Messages) -> tuple[str, list[tuple[int, int]]]:
        """The full text and the [start, end) character span of every assistant response.

        Each span runs from the end of the generation prompt to the end of the turn's
        end-of-turn token (``<|im_end|>`` for ChatML, EOS for the default template), found by
        rendering the conversation prefix by prefix.
        """
        full = self.render(messages)
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = self.render(messages[:i], add_generation_prompt=True)
            through = self.render(messages[: i + 1]).rstrip()
            if not (full.startswith(before) and full.startswith(through)):
                raise TunelabError(
                    "the tokenizer's chat template does not render conversations prefix by "
                    "prefix, so responses cannot be located; set data.template: default"
                )
            spans.append((len(before), len(through)))
        return full, spans


def last_assistant(messages: Messages) -> int:
    """Index of the last assistant message."""
    return max(i for i, m in enumerate(messages) if m["role"] == "assistant")
