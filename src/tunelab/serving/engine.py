"""The models a server holds, by the name clients send in ``model``, and how a batch runs.

``load_engine(RUN_DIR, {NAME: RUN_DIR})`` loads the run (its ``model/`` artifact, any method)
and each named run. A LoRA run on the same base as a LoRA main run is loaded into the main
run's PEFT model as one more adapter (one base in memory); anything else is loaded on its own.
Each name is a :class:`Slot`: the loaded model, the PEFT adapter it activates (``__base__``:
the base model of a LoRA run, adapters bypassed) and the rendering of its own artifact, so
every prompt is rendered and stopped as that artifact was trained.

:meth:`Engine.run` executes one batch of jobs to its end (``tunelab chat``, and the worker for
what cannot batch continuously): jobs on the same model decode together; LoRA adapters without
DoRA share one batch through PEFT's ``adapter_names``, others run one adapter at a time.
:func:`continuous` says which jobs the worker may decode by continuous batching instead
(:mod:`tunelab.serving.continuous`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from tunelab.data.rendering import read_rendering
from tunelab.decoding import RowControl, generate, stop_token_ids
from tunelab.errors import TunelabError, first_line
from tunelab.export import artifact_dir
from tunelab.inference import Loaded, add_adapter, load, position_limit, predict
from tunelab.methods.artifacts import read_method_info
from tunelab.methods.registry import get_method
from tunelab.serving.continuous import BASE, Running, supports
from tunelab.serving.images import pixel_inputs
from tunelab.serving.jobs import Choice, Classified, Job


@dataclass
class Slot:
    """One servable model name."""

    name: str
    loaded: Loaded  # shares the model and tokenizer with the other adapters of its base
    adapter: str | None  # PEFT adapter to activate; BASE: adapters off; None: not a PEFT model
    mixable: bool  # may share a batch with other adapters (LoRA without DoRA)
    source: str  # the artifact folder (or the base model) it serves
    parent: str | None = None  # the base model's name, for adapters

    @property
    def task(self) -> str:
        return self.loaded.task

    @property
    def stepwise(self) -> bool:
        """Decoded by forward passes (prefix tuning; see ``decoding.stepwise_greedy``)."""
        return self.adapter != BASE and get_method(self.loaded.method).decode_by_forward

    @cached_property
    def stop_ids(self) -> list[int]:
        """EOS and end-of-turn ids (read once: the vocabulary scan costs ~0.1 s at 49k tokens)."""
        return stop_token_ids(self.loaded.tokenizer)

    @property
    def limit(self) -> int | None:
        """Prompt plus new tokens the model can attend to."""
        return position_limit(self.loaded)

    @cached_property
    def continuous(self) -> bool:
        """Decodes by continuous batching: a plain model, or a LoRA adapter PEFT can mix
        (not DoRA, prompt or prefix tuning), on a model with a plain ``DynamicCache``."""
        plain = self.adapter is None and not get_method(self.loaded.method).decode_by_forward
        return (
            self.task != "classification"
            and (plain or (self.mixable and self.loaded.method == "lora"))
            and supports(self.loaded.model)
        )

    def running(self) -> Running:
        """An empty continuous batch on this slot's model."""
        tokenizer = self.loaded.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return Running(self.loaded.model, pad, peft=self.adapter is not None)


def continuous(job: Job) -> bool:
    """Whether the worker may decode ``job`` in a continuous batch (not with images: their
    pixel values enter once, with the prompt, in the batch path)."""
    return job.kind == "generate" and job.slot.continuous and not job.images


class Engine:
    """The slots by name, and the batch runner."""

    def __init__(self, slots: dict[str, Slot]) -> None:
        self.slots = slots

    def slot(self, name: str) -> Slot | None:
        return self.slots.get(name)

    def run(self, jobs: list[Job]) -> None:
        """Run a batch of jobs; a failure is reported to the jobs of its group only."""
        for group in _groups([job for job in jobs if not job.cancelled.is_set()]):
            try:
                if group[0].kind == "classify":
                    _classify(group)
                else:
                    _generate([choice for job in group for choice in job.choices])
            except Exception as exc:  # a failed batch must not stop the server
                for job in group:
                    job.fail(f"generation failed: {first_line(exc)}")


def _groups(jobs: list[Job]) -> list[list[Job]]:
    """Jobs that can run in one call: same model, same kind, same decoding path."""
    groups: dict[tuple[int, str, bool], list[Job]] = {}
    for job in jobs:
        key = (id(job.slot.loaded.model), job.kind, job.slot.stepwise)
        groups.setdefault(key, []).append(job)
    return list(groups.values())


def _generate(choices: list[Choice]) -> None:
    """Decode ``choices`` (one model): in one mixed batch when every adapter allows it."""
    slots = {id(c.job.slot): c.job.slot for c in choices}.values()
    if all(continuous(c.job) for c in choices):
        running = next(iter(slots)).running()
        running.admit(choices)
        while running:
            running.step()
        return
    peft = any(slot.adapter is not None for slot in slots)
    if not peft or len(slots) == 1 or not all(slot.mixable for slot in slots):
        parts: dict[str | None, list[Choice]] = {}
        for choice in choices:
            parts.setdefault(choice.job.slot.adapter, []).append(choice)
        for part in parts.values():
            with active(part[0].job.slot):
                _decode(part, None)
        return
    _decode(choices, [c.job.slot.adapter or BASE for c in choices])


def _decode(choices: list[Choice], adapter_names: list[str] | None) -> None:
    slot = choices[0].job.slot
    control = RowControl(
        [c.sampling for c in choices],
        lambda row, tokens: choices[row].watch(tokens),
        adapter_names,
    )
    longest = max(c.job.max_tokens for c in choices)
    model, tokenizer = slot.loaded.model, slot.loaded.tokenizer
    prompts = [c.prompt for c in choices]
    inputs = pixel_inputs(slot.loaded, [url for c in choices for url in c.job.images])
    generate(
        model, tokenizer, prompts, longest, stepwise=slot.stepwise, control=control, inputs=inputs
    )
    for choice in choices:
        choice.close()


def _classify(jobs: list[Job]) -> None:
    """Classify each job's inputs (one adapter at a time)."""
    by_slot: dict[int, list[Job]] = {}
    for job in jobs:
        by_slot.setdefault(id(job.slot), []).append(job)
    for part in by_slot.values():
        slot = part[0].slot
        inputs = [item for job in part for item in job.inputs]
        with active(slot):
            results = predict(slot.loaded, inputs, batch_size=max(len(inputs), 1))
        start = 0
        for job in part:
            rows = results[start : start + len(job.inputs)]
            start += len(job.inputs)
            job.sink(Classified([{k: r[k] for k in ("label", "probabilities")} for r in rows]))


@contextmanager
def active(slot: Slot) -> Iterator[None]:
    """The slot's adapter active (or every adapter bypassed for the base) inside the block."""
    if slot.adapter == BASE:
        with slot.loaded.model.disable_adapter():
            yield
        return
    if slot.adapter is not None:
        slot.loaded.model.set_adapter(slot.adapter)
    yield


def load_engine(
    run_dir: str | Path, adapters: dict[str, Path] | None = None, name: str | None = None
) -> Engine:
    """Load the run (any method) and the named adapters/runs into servable slots."""
    main_dir = artifact_dir(run_dir)
    main = load(main_dir)
    main_info = read_method_info(main_dir)
    main_name = name or default_name(Path(run_dir))
    slots = {main_name: _main_slot(main_name, main, main_info, main_dir)}
    if main.method == "lora" and main.task == "causal_lm":  # a classifier's head is trained
        base_name = str(main_info["base_model"])
        slots[base_name] = Slot(base_name, main, BASE, True, main_info["base_model_resolved"])
    for adapter_name, path in (adapters or {}).items():
        if adapter_name in slots:
            raise TunelabError(f"--adapter {adapter_name}: the name is already served; rename it")
        slots[adapter_name] = _adapter_slot(adapter_name, Path(path), main, main_info, main_name)
    return Engine(slots)


def default_name(run_dir: Path) -> str:
    """A run's served name: its directory's name (the run's, for a ``model/`` folder)."""
    path = run_dir.resolve()
    return path.parent.name if path.name == "model" else path.name


def _main_slot(name: str, loaded: Loaded, info: dict[str, Any], folder: Path) -> Slot:
    adapter = "default" if loaded.adapters else None
    return Slot(name, loaded, adapter, _mixable(info), str(folder))


def _adapter_slot(
    name: str, path: Path, main: Loaded, main_info: dict[str, Any], main_name: str
) -> Slot:
    """A named run: one more adapter of the main model when it can share it, else its own."""
    plain_peft = (path / "adapter_config.json").is_file() and not (
        path / "tunelab_method.json"
    ).is_file()
    folder = path if plain_peft else artifact_dir(path)
    info = None if plain_peft else read_method_info(folder)
    if plain_peft or _shares_base(main, main_info, info):
        bare_lora = info is not None or _peft_config(folder).get("peft_type") == "LORA"
        if main.method != "lora" or not bare_lora:
            raise TunelabError(
                f"--adapter {name}: {path} is a bare PEFT adapter; only a LoRA one can join, "
                "and only a LoRA run; pass a tunelab run directory instead"
            )
        add_adapter(main.model, name, folder)
        rendering = (read_rendering(folder) or main.rendering) if info else main.rendering
        view = dataclasses.replace(main, rendering=rendering)
        mixable = _mixable(info) if info else not _peft_config(folder).get("use_dora")
        return Slot(name, view, name, mixable, str(folder), main_name)
    own = load(folder)
    return Slot(name, own, "default" if own.adapters else None, False, str(folder))


def _shares_base(main: Loaded, main_info: dict[str, Any], info: dict[str, Any] | None) -> bool:
    """Both LoRA runs of the same task on the same base model with the same vocabulary."""
    if info is None or main.method != "lora" or info["method"] != "lora":
        return False
    same = all(info[key] == main_info[key] for key in ("base_model_resolved", "task"))
    return same and info.get("base_model_gguf_file") == main_info.get("base_model_gguf_file")


def _peft_config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))


def _mixable(info: dict[str, Any]) -> bool:
    """PEFT mixes LoRA adapters in one batch, but not DoRA ones."""
    return info["method"] == "lora" and not (info.get("settings") or {}).get("use_dora", False)


__all__ = ["BASE", "Engine", "Slot", "default_name", "load_engine"]
