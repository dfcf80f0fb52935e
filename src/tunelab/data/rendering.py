"""How a run renders its inputs, stored beside its artifact in ``tunelab_rendering.json``.

The file records the data format, the template choice (``data.template``), the chat template
string actually used (``null``: tunelab's default template), ``max_length``, the truncation
side, ``loss_on``, the label names and the column names. ``tunelab predict``, ``tunelab eval
RUN_DIR`` and the prompting baseline all render prompts through :func:`render_prompt` with it,
so a prompt is rendered exactly as the same conversation was in training.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunelab.config import ColumnsConfig, DataConfig, RunConfig
from tunelab.data.templates import ChatRenderer, Messages
from tunelab.errors import TunelabError

RENDERING_FILE = "tunelab_rendering.json"


@dataclass(frozen=True)
class Rendering:
    """The rendering settings a model was trained with."""

    format: str
    template: str
    chat_template: str | None
    max_length: int
    truncation_side: str
    loss_on: str
    label_names: list[str] | None
    columns: dict[str, str | None]

    @classmethod
    def from_config(
        cls, data: DataConfig, tokenizer: Any, label_names: list[str] | None = None
    ) -> Rendering:
        """The rendering ``data`` gives with ``tokenizer`` (its chat template, if used)."""
        chat = ChatRenderer(tokenizer, data.template).chat_template if tokenizer else None
        return cls(
            format=data.format,
            template=data.template,
            chat_template=chat,
            max_length=data.max_length,
            truncation_side=data.truncation_side,
            loss_on=data.loss_on,
            label_names=label_names,
            columns=data.columns.model_dump(),
        )

    @property
    def column_config(self) -> ColumnsConfig:
        """The column names as a ``ColumnsConfig``."""
        return ColumnsConfig.model_validate(self.columns)

    def renderer(self, tokenizer: Any) -> ChatRenderer:
        """A renderer for conversations: the stored chat template, or the default template."""
        return ChatRenderer(tokenizer, self.template, self.chat_template)


def legacy_rendering(info: dict[str, Any]) -> Rendering:
    """The rendering of an artifact saved without ``tunelab_rendering.json`` (data defaults)."""
    fmt = "classification" if info["task"] == "classification" else "chat"
    data = DataConfig.model_validate({"path": "unused", "format": fmt})
    return Rendering.from_config(data, None, info["label_names"])


def render_prompt(rendering: Rendering, tokenizer: Any, messages: Messages) -> str:
    """The generation prompt of a conversation (up to its last assistant turn), as in training.

    The one place prompts are rendered for predict, eval and the prompting baseline.
    """
    return rendering.renderer(tokenizer).prompt(messages)


def save_rendering(directory: str | Path, rendering: Rendering) -> Path:
    """Write ``tunelab_rendering.json`` into ``directory``."""
    path = Path(directory) / RENDERING_FILE
    path.write_text(json.dumps(asdict(rendering), indent=2) + "\n", encoding="utf-8")
    return path


def read_rendering(directory: str | Path) -> Rendering | None:
    """The stored rendering of an artifact, or None when it has none (older artifacts)."""
    path = Path(directory) / RENDERING_FILE
    if not path.is_file():
        return None
    try:
        return Rendering(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise TunelabError(f"{path}: unreadable ({exc}); retrain or restore the file") from None


def with_stored_rendering(cfg: RunConfig, artifact_dir: str | Path) -> RunConfig:
    """``cfg`` with the template, max_length, truncation side and loss_on stored in
    ``artifact_dir`` (unchanged when the artifact stores none)."""
    rendering = read_rendering(artifact_dir)
    if rendering is None:
        return cfg
    update = {
        "template": rendering.template,
        "max_length": rendering.max_length,
        "truncation_side": rendering.truncation_side,
        "loss_on": rendering.loss_on,
    }
    return cfg.model_copy(update={"data": cfg.data.model_copy(update=update)})
