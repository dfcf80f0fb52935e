"""The ``Method`` interface: everything tunelab needs to know about one fine-tuning method.

A method is one subclass of :class:`Method` in its own module, registered once with
:func:`tunelab.methods.registry.register`. Config, training, artifacts, export and inference
ask the registry instead of testing method names. The defaults here fit a method that changes
the model in place and trains a subset of its tensors: the artifact holds exactly the trained
tensors (``tunelab_weights.safetensors``, reloaded by applying the method to the base and
copying them in), and the export writes the trained model's weights as a plain Transformers
model. Heavy imports (torch, transformers, peft) stay inside functions, so the config and
``tunelab validate`` never load them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tunelab.methods.trainable import load_trainable_state_dict, trainable_state_dict

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from tunelab.config.section import Section, Task

WEIGHTS_FILE = "tunelab_weights.safetensors"


@dataclass(frozen=True)
class Artifact:
    """A saved artifact for export: its folder, its ``tunelab_method.json`` and its loader."""

    dir: Path
    info: dict[str, Any]
    load: Callable[[], tuple[nn.Module, PreTrainedTokenizerBase]]


class Method:
    """One fine-tuning method. Subclasses set the class attributes and override what differs.

    Attributes:
        name: the ``method.name`` value, also the key of its settings block.
        settings: the pydantic model of its settings block (a ``Section``), or None.
        description: one line for docs and the CLI (``describe()``).
        whole_model: the artifact is the whole model (``save_pretrained``), not an overlay.
        layerwise_lr: ``train.llrd`` applies (the method trains whole blocks).
        virtual_tokens: it prepends virtual tokens to every row (no ``train.packing``).
        decode_by_forward: ``generate`` ignores what it adds; predict decodes by forward passes.
        plain_export: its export is a plain Transformers model (LoRA merged), so a later
            training stage can start from it (``stages:``).
        placeholder: not a method itself; the planner replaces it before training (auto).
    """

    name: ClassVar[str]
    settings: ClassVar[type[Section] | None] = None
    description: ClassVar[str] = ""
    whole_model: ClassVar[bool] = False
    layerwise_lr: ClassVar[bool] = False
    virtual_tokens: ClassVar[bool] = False
    decode_by_forward: ClassVar[bool] = False
    plain_export: ClassVar[bool] = True
    placeholder: ClassVar[bool] = False

    def describe(self) -> str:
        """One line saying what trains."""
        return self.description

    def supports(self, task: Task, model: nn.Module) -> str | None:
        """Why this method cannot fine-tune ``model`` (its architecture) for ``task``, or None."""
        return None

    def apply(self, model: nn.Module, settings: Section | None, task: Task) -> nn.Module:
        """Apply the method; afterwards exactly its parameters have ``requires_grad``."""
        raise NotImplementedError(f"method {self.name}: apply is not implemented")

    def save(self, model: nn.Module, folder: Path, info: dict[str, Any]) -> None:
        """Write the trained state into the artifact ``folder`` (default: the trained tensors)."""
        from safetensors.torch import save_file

        save_file(trainable_state_dict(model), str(folder / WEIGHTS_FILE), {"format": "pt"})

    def load(self, base_model: nn.Module, folder: Path, info: dict[str, Any]) -> nn.Module:
        """The base model with the saved trained state of artifact ``folder`` applied."""
        from safetensors.torch import load_file

        settings = self.settings.model_validate(info["settings"]) if self.settings else None
        model = self.apply(base_model, settings, info["task"])
        load_trainable_state_dict(model, load_file(str(folder / WEIGHTS_FILE)))
        return model

    def export(self, artifact: Artifact, folder: Path, shown: Path) -> str:
        """Write the standalone export into ``folder``; return the note for the user.

        ``shown`` is where the export ends up (``folder`` is moved there when done).
        """
        model, tokenizer = artifact.load()
        save_whole(model, tokenizer, folder)
        return f"exported a standalone merged {self.name} model to {shown}"


def save_whole(model: nn.Module, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    """``save_pretrained`` the model and its tokenizer into ``folder``."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
