"""OpenAI-shaped response bodies and stream chunks for completions, chat and classification."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

CHAT, COMPLETION = "chat", "completion"


def new_id(kind: str) -> str:
    prefix = {"chat": "chatcmpl", "completion": "cmpl"}.get(kind, kind)
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def full_response(
    kind: str, model: str, texts: list[str], reasons: list[str], prompt: int, completion: int
) -> dict[str, Any]:
    """The non-streamed answer: every choice's text and finish reason, and the usage."""
    if kind == CHAT:
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "finish_reason": reason,
                "logprobs": None,
            }
            for i, (text, reason) in enumerate(zip(texts, reasons, strict=True))
        ]
        obj = "chat.completion"
    else:
        choices = [
            {"index": i, "text": text, "finish_reason": reason, "logprobs": None}
            for i, (text, reason) in enumerate(zip(texts, reasons, strict=True))
        ]
        obj = "text_completion"
    return {
        "id": new_id(kind),
        "object": obj,
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage(prompt, completion),
    }


class Chunks:
    """Server-sent events of one streamed answer (all chunks share id and created)."""

    def __init__(self, kind: str, model: str) -> None:
        self.kind, self.model = kind, model
        self.id, self.created = new_id(kind), int(time.time())

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        obj = "chat.completion.chunk" if self.kind == CHAT else "text_completion"
        body = {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        return sse(body)

    def start(self, index: int) -> str | None:
        """Chat's first chunk of a choice (the role); None for completions."""
        if self.kind != CHAT:
            return None
        delta = {"role": "assistant", "content": ""}
        return self._event([{"index": index, "delta": delta, "finish_reason": None}])

    def text(self, index: int, text: str, reason: str | None = None) -> str:
        if self.kind == CHAT:
            delta = {"content": text} if text else {}
            choice = {"index": index, "delta": delta, "finish_reason": reason, "logprobs": None}
        else:
            choice = {"index": index, "text": text, "finish_reason": reason, "logprobs": None}
        return self._event([choice])

    def usage(self, prompt: int, completion: int) -> str:
        return self._event([], usage=usage(prompt, completion))


def sse(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


DONE = "data: [DONE]\n\n"
