"""A DeepSpeed ZeRO optimizer seen as a torch optimizer over whole parameters.

Checkpoints then hold the optimizer state in torch's format with whole tensors, the same as a
1-process run, whatever the stage and the number of processes (see ``deepspeed.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tunelab.train.sharding import full_shape


class ZeroOptimizerState:
    """A ZeRO optimizer seen as a torch optimizer over whole parameters.

    ``state_dict()`` has torch's format (per-parameter state with whole tensors, groups whose
    ``params`` are positions), as a 1-process run saves it; ``load_state_dict`` partitions
    such a state dict back. ``step``/``zero_grad`` do nothing: the engine does both.
    """

    def __init__(self, zero_optimizer: Any, params_per_group: list[list[nn.Parameter]]) -> None:
        self.zero = zero_optimizer
        self.base = zero_optimizer.optimizer  # the torch optimizer over flat partitions
        self.param_groups = [
            {**group, "params": params}
            for group, params in zip(self.base.param_groups, params_per_group, strict=True)
        ]

    def step(self) -> None:
        """The engine steps (``ZeroEngine.step``)."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        """The engine zeroes gradients after its step."""

    def _flat_partitions(self) -> list[torch.Tensor]:
        """This process's flat fp32 partitions: the tensors the base optimizer keeps state for."""
        if hasattr(self.zero, "fp32_partitioned_groups_flat"):  # stage 3
            return list(self.zero.fp32_partitioned_groups_flat)
        return list(self.zero.single_partition_of_fp32_groups)  # stages 1-2

    def _params(self) -> list[nn.Parameter]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        """Whole per-parameter state (every process must call it: it gathers)."""
        from deepspeed.utils import safe_get_full_optimizer_state

        flat_state = next(iter(self.base.state.values()), {})
        keys = sorted(k for k, v in flat_state.items() if torch.is_tensor(v) and v.dim() > 0)
        shared = {k: v for k, v in flat_state.items() if k not in keys}  # e.g. Adam's step
        state = {}
        for pid, param in enumerate(self._params()):
            entry = {k: v.clone() if torch.is_tensor(v) else v for k, v in shared.items()}
            for key in keys:
                full = safe_get_full_optimizer_state(param, key)
                entry[key] = full.detach().reshape(full_shape(param)).cpu()
            state[pid] = entry
        groups, start = [], 0
        for base_group, group in zip(self.base.param_groups, self.param_groups, strict=True):
            hyper = {k: v for k, v in base_group.items() if k != "params"}
            groups.append({**hyper, "params": list(range(start, start + len(group["params"])))})
            start += len(group["params"])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Partition a whole-tensor state dict into the ZeRO optimizer (collective)."""
        from deepspeed.utils import safe_set_full_optimizer_state

        entries = state_dict["state"]
        first = next(iter(entries.values()), {})
        keys = sorted(k for k, v in first.items() if torch.is_tensor(v) and v.dim() > 0)
        shared = {k: v for k, v in first.items() if k not in keys}
        for flat in self._flat_partitions():  # create the (lazily built) state, then fill it
            state = {k: torch.zeros_like(flat) for k in keys}
            for k, v in shared.items():
                state[k] = v.clone().to(flat.device) if torch.is_tensor(v) else v
            self.base.state[flat] = state
        link = getattr(self.zero, "_lazy_init_hp_params_optimizer_state", None)
        if link is not None:  # stages 1-2 map each parameter to its slice of the partitions
            self.zero._hp_optimizer_states_linked = False
            link()
        for pid, param in enumerate(self._params()):
            for key in keys:
                value = entries[pid][key].to(device=param.device, dtype=torch.float32)
                safe_set_full_optimizer_state(param, value, key)
        for base_group, saved in zip(
            self.base.param_groups, state_dict["param_groups"], strict=True
        ):
            base_group.update({k: v for k, v in saved.items() if k != "params"})
