"""The request bodies the server accepts (OpenAI's shapes) and its error body.

Fields are typed strictly (a string where a number belongs is a 400, not a guess); fields this
server does not use are ignored, as OpenAI clients send some by default.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_STOP = 4
SEED_LIMIT = 2**63  # torch generators take 64-bit seeds


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ImageUrl(Strict):
    url: str


class ImagePart(Strict):
    """OpenAI's image content part; this server reads ``data:image/...;base64,`` URLs."""

    type: Literal["image_url"]
    image_url: ImageUrl


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(Strict):
    role: Literal["system", "user", "assistant"]
    content: str | list[Part]

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    @property
    def images(self) -> list[str]:
        """The URLs of the message's image parts."""
        if isinstance(self.content, str):
            return []
        return [part.image_url.url for part in self.content if isinstance(part, ImagePart)]


class StreamOptions(Strict):
    include_usage: bool = False


class Sampled(Strict):
    """What completions and chat completions share."""

    model: str
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1)] = 1
    stop: (
        str
        | Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=MAX_STOP)]
        | None
    ) = None
    seed: Annotated[int, Field(ge=0, lt=SEED_LIMIT)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @property
    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatRequest(Sampled):
    messages: Annotated[list[Message], Field(min_length=1)]


class CompletionRequest(Sampled):
    prompt: str | Annotated[list[str], Field(min_length=1)]


class PairInput(Strict):
    text: str
    text_pair: str | None = None


class ClassifyRequest(Strict):
    model: str
    input: str | Annotated[list[str | PairInput], Field(min_length=1)]


def error_body(
    message: str,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def validation_problem(exc: ValidationError) -> tuple[str, str | None]:
    """(message, param) of a request's first validation error."""
    first = exc.errors(include_url=False)[0]
    loc = [
        str(part) for part in first["loc"] if not str(part).startswith(("str", "list", "function"))
    ]
    param = ".".join(loc) or None
    where = f"{param}: " if param else ""
    return f"{where}{first['msg']}", param
