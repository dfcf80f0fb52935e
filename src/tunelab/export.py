"""Export a run as a standalone model that plain Transformers loads without tunelab.

- full, freeze, bitfit: the trained weights are written into the base model's weights.
- lora (also rsLoRA, DoRA): merged into the base weights with PEFT's ``merge_and_unload``.
- adapter: cannot be folded: ``y + up(act(down(y)))`` after a linear layer is not linear in
  ``y`` for any offered activation, so no base weight can hold it. The export is instead a
  self-contained Transformers model: the base class plus the adapters, in a generated
  ``modeling_tunelab_adapter.py`` (torch + transformers only) named in ``config.json``'s
  ``auto_map``, with its own ``model_type`` (``tunelab_adapter_<base type>``) and config class,
  so loading it without ``trust_remote_code=True`` fails instead of silently dropping the
  adapters; load it with ``AutoModelFor...from_pretrained(OUT, trust_remote_code=True)``.
- prompt_tuning, prefix_tuning: cannot be merged (the soft prompt / prefix is an extra input,
  not a weight change); the PEFT adapter is exported instead, for
  ``peft.PeftModel.from_pretrained(base, OUT)``.

Every export holds ``tunelab_export.json`` (the run, the method and the files written). An
output folder that is not empty is refused, unless ``overwrite`` is set and it holds an earlier
export and nothing else; the run itself (or a folder inside it) is never a valid output.
- prefix_tuning on an encoder (tunelab's own prefixes): exported like adapter, with generated
  code (``export_prefix.py``); load it with ``trust_remote_code=True``.
"""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from tunelab.config import AdapterSettings
from tunelab.errors import TunelabError
from tunelab.export_prefix import write_prefix_code
from tunelab.export_target import check_output, write_marker
from tunelab.io import atomic_dir, recover_dir
from tunelab.methods.adapter import AdaptedSublayer, Bottleneck, adapter_sites, bottleneck_size
from tunelab.methods.artifacts import WEIGHTS_FILE, load_artifact, read_method_info

if TYPE_CHECKING:
    from rich.console import Console

PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")
PROMPT_METHODS = ("prompt_tuning", "prefix_tuning")


def artifact_dir(run_or_artifact: str | Path) -> Path:
    """The artifact folder of a run directory (``RUN_DIR/model``), or the folder itself."""
    path = Path(run_or_artifact)
    recover_dir(path / "model")  # a crash while the model was being replaced
    if (path / "model" / "tunelab_method.json").is_file():
        return path / "model"
    if (path / "tunelab_method.json").is_file():
        return path
    if not path.is_dir():
        raise TunelabError(f"{path}: no such run directory")
    raise TunelabError(f"{path}: no trained model in it (expected {path / 'model'}); train first")


def export_run(
    run_dir: str | Path,
    out: str | Path,
    console: Console | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a standalone merged model (or, for prompt/prefix tuning, the PEFT adapter) to ``out``.

    ``overwrite`` lets ``out`` be replaced when it holds an earlier tunelab export (and only
    then); a non-empty ``out`` is refused otherwise, and so is the run directory or any folder
    inside it.
    """
    source = artifact_dir(run_dir)
    method = read_method_info(source)["method"]
    out = Path(out)
    check_output(Path(run_dir), source, out, overwrite)
    encoder_prefix = method == "prefix_tuning" and (source / WEIGHTS_FILE).is_file()
    if method in PROMPT_METHODS and not encoder_prefix:
        with atomic_dir(out) as tmp:
            for name in source.iterdir():
                if name.name in PEFT_FILES or name.name.startswith(("tokenizer", "chat_template")):
                    shutil.copy2(name, tmp / name.name)
            write_marker(tmp, source, method)
        _say(
            console,
            f"{method} cannot be merged into the weights (it adds virtual tokens, not a weight "
            f"change); wrote the PEFT adapter to {out}: load it with "
            "peft.PeftModel.from_pretrained(base_model, OUT)",
        )
        return out
    model, tokenizer = load_artifact(source)
    if method == "lora":
        model = model.merge_and_unload()
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if method == "adapter":
            write_adapter_code(model, read_method_info(source), tmp)
        elif encoder_prefix:
            write_prefix_code(model, tmp)
        write_marker(tmp, source, method)
    if encoder_prefix:
        _say(
            console,
            f"prefix tuning cannot be merged into the weights (the prefixes are extra attention "
            f"inputs); exported the model with its prefixes to {out}: load it with "
            "AutoModelForSequenceClassification.from_pretrained(OUT, trust_remote_code=True)",
        )
    elif method == "adapter":
        _say(
            console,
            f"bottleneck adapters are non-linear and cannot be folded into the base weights; "
            f"exported the model with its adapters to {out}: load it with "
            "AutoModelFor...from_pretrained(OUT, trust_remote_code=True)",
        )
    else:
        _say(console, f"exported a standalone merged {method} model to {out}")
    return out


def write_adapter_code(model: nn.Module, info: dict[str, Any], out: Path) -> None:
    """Add the generated modelling file and its ``auto_map`` entry to an exported adapter model."""
    settings = AdapterSettings.model_validate(info["settings"])
    hidden = int(model.config.hidden_size)
    base_cls, config_cls = type(model).__name__, type(model.config).__name__
    model_type = f"{ADAPTER_TYPE_PREFIX}{model.config.model_type}"
    auto = (
        "AutoModelForSequenceClassification"
        if info["task"] == "classification"
        else ("AutoModelForCausalLM")
    )
    code = ADAPTER_CODE.format(
        base_cls=base_cls,
        config_cls=config_cls,
        model_type=model_type,
        bottleneck=inspect.getsource(Bottleneck),
        sublayer=inspect.getsource(AdaptedSublayer),
    )
    (out / f"{ADAPTER_MODULE}.py").write_text(code, encoding="utf-8")
    config_path = out / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["model_type"] = model_type  # plain Transformers must not load it as the base
    config["architectures"] = ["TunelabAdapterModel"]
    config["auto_map"] = {
        "AutoConfig": f"{ADAPTER_MODULE}.TunelabAdapterConfig",
        auto: f"{ADAPTER_MODULE}.TunelabAdapterModel",
    }
    config["tunelab_adapter"] = {
        "sites": adapter_sites(model, settings.kind),
        "hidden": hidden,
        "size": bottleneck_size(hidden, settings),
        "activation": settings.activation,
    }
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


ADAPTER_MODULE = "modeling_tunelab_adapter"
ADAPTER_TYPE_PREFIX = "tunelab_adapter_"
ADAPTER_CODE = '''"""Generated by tunelab: {base_cls} with bottleneck adapters after sublayer outputs.

Needs only torch and transformers. The adapter sites and sizes are in config.tunelab_adapter.
Its own model_type ({model_type}) keeps plain loading without trust_remote_code from
silently building {base_cls} with the adapters missing.
"""

from typing import Any

import torch
from torch import nn
from transformers import {base_cls}, {config_cls}

ACTIVATIONS = {{"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}}


{bottleneck}

{sublayer}

class TunelabAdapterConfig({config_cls}):
    model_type = "{model_type}"


class TunelabAdapterModel({base_cls}):
    config_class = TunelabAdapterConfig

    def __init__(self, config):
        super().__init__(config)
        spec = config.tunelab_adapter
        for path in spec["sites"]:
            parent, _, leaf = path.rpartition(".")
            base = self.get_submodule(path)
            adapter = Bottleneck(spec["hidden"], spec["size"], spec["activation"], 0.0)
            setattr(self.get_submodule(parent), leaf, AdaptedSublayer(base, adapter))
'''


def _say(console: Console | None, text: str) -> None:
    if console is not None:
        console.print(text)
