"""``tunelab export --for vllm``: an export that vLLM and SGLang load, or what to change.

vLLM (``--enable-lora --lora-modules NAME=OUT``) and SGLang (``--enable-lora --lora-paths
NAME=OUT``) load LoRA adapters with only LoRA A/B matrices: no DoRA, no ``modules_to_save``
(which a classification LoRA uses for its head), no bias, on a generative model; and plain
Transformers models (``vllm serve OUT``). So:
- lora that follows those rules: the PEFT adapter, the tokenizer and the chat template the
  run was trained with (``chat_template.jinja``; tunelab's default template as Jinja when the
  run used it), for ``--lora-modules``;
- methods whose export is a plain model (full, freeze, bitfit): the usual merged export;
- anything else: a one-line error saying what to change (retrain, or merge without ``--for``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.data.rendering import read_rendering
from tunelab.errors import TunelabError
from tunelab.export import artifact_dir, export_run
from tunelab.export_serving import write_serving_files
from tunelab.export_target import check_output, write_marker
from tunelab.io import atomic_dir
from tunelab.methods.artifacts import read_method_info
from tunelab.methods.base import Method
from tunelab.methods.registry import get_method

if TYPE_CHECKING:
    from rich.console import Console

TARGETS = ("vllm", "sglang")
# tunelab's default template (tunelab.data.templates.default_render) as a Jinja chat template
DEFAULT_TEMPLATE_JINJA = (
    "{% for message in messages %}"
    "{{ '### ' + message['role'] | capitalize + ':\\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\\n' }}{% endif %}"
)
MERGE_HINT = "or export without --for for a merged model that vLLM serves as is (vllm serve OUT)"


def lora_problems(adapter_config: dict[str, Any], task: str) -> list[str]:
    """Why vLLM/SGLang would refuse (or silently misuse) this PEFT adapter: what to change."""
    problems = []
    if adapter_config.get("peft_type") != "LORA":
        problems.append(f"a {adapter_config.get('peft_type')} adapter; vLLM loads LoRA only")
    if adapter_config.get("use_dora"):
        problems.append(
            f"DoRA adapters are refused: retrain with method.lora.use_dora: false, {MERGE_HINT}"
        )
    saved = adapter_config.get("modules_to_save") or []
    if saved:
        problems.append(
            f"modules_to_save ({', '.join(saved)}) holds full trained weights, which vLLM "
            f"refuses; {MERGE_HINT}"
        )
    if adapter_config.get("bias", "none") != "none":
        problems.append(
            f"LoRA bias {adapter_config['bias']!r} is not loaded: retrain with bias none"
        )
    if task != "causal_lm":
        problems.append(
            "a classification run: vLLM serves LoRA adapters for generation only; serve it "
            "with tunelab serve (POST /v1/classify)"
        )
    return problems


def export_for(
    target: str,
    run_dir: str | Path,
    out: str | Path,
    console: Console | None = None,
    overwrite: bool = False,
) -> Path:
    """Export ``run_dir`` for vLLM or SGLang, or raise naming what to change."""
    if target not in TARGETS:
        raise TunelabError(f"--for {target!r}: unknown target; choose one of {', '.join(TARGETS)}")
    source = artifact_dir(run_dir)
    info = read_method_info(source)
    method = get_method(info["method"])
    if method.name != "lora":
        if type(method).export is Method.export:  # the trained weights as a plain model
            return export_run(run_dir, out, console, overwrite)
        raise TunelabError(
            f"{source}: a {method.name} run; vLLM and SGLang load LoRA adapters and plain "
            "Transformers models, not this method's export: serve it with tunelab serve, or "
            "retrain with method.name: lora (or full, freeze, bitfit)"
        )
    adapter_config = json.loads((source / "adapter_config.json").read_text(encoding="utf-8"))
    problems = lora_problems(adapter_config, info["task"])
    if problems:
        raise TunelabError(f"{source}: not servable by {target}: " + "; ".join(problems))
    out = Path(out)
    check_output(Path(run_dir), source, out, overwrite)
    with atomic_dir(out) as tmp:
        for path in source.iterdir():
            if path.name.startswith(("adapter_", "tokenizer", "special_tokens")):
                shutil.copy2(path, tmp / path.name)
        rendering = read_rendering(source)
        template = rendering.chat_template if rendering else None
        (tmp / "chat_template.jinja").write_text(
            template or DEFAULT_TEMPLATE_JINJA, encoding="utf-8"
        )
        write_serving_files(tmp, source, info)
        write_marker(tmp, source, method.name)
    if console is not None:
        console.print(
            _usage(target, adapter_config["base_model_name_or_path"], out), soft_wrap=True
        )
    return out


def _usage(target: str, base: str, out: Path) -> str:
    name = out.name
    if target == "vllm":
        command = (
            f"vllm serve {base} --enable-lora --lora-modules {name}={out} "
            f"--chat-template {out / 'chat_template.jinja'}"
        )
    else:
        command = (
            f"python -m sglang.launch_server --model-path {base} --enable-lora "
            f"--lora-paths {name}={out} --chat-template {out / 'chat_template.jinja'}"
        )
    return f"wrote a LoRA adapter for {target} to {out}; serve it with:\n  {command}"
