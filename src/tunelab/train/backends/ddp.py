"""DDP: several processes, each with the whole model (``examples/accelerate/ddp.yaml``).

``accelerator.prepare`` wraps the model in ``DistributedDataParallel``, which all-reduces
(averages) the gradients in backward; the loop scales each loss by ``world_size / total loss
items``, so the average is the gradient of the global batch.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager

from torch import nn

from tunelab.train.backends.single import SingleProcess

# where launchers put the number of processes (torchrun/accelerate launch, MPI flavours)
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def ddp_requested() -> bool:
    """True when launched with more than one process (and no FSDP or DeepSpeed config)."""
    for variable in WORLD_SIZE_VARIABLES:
        if variable in os.environ:
            return int(os.environ[variable]) > 1
    return False


class DataParallel(SingleProcess):
    """Data parallelism: gradients all-reduced on the last micro-batch of each step."""

    name = "ddp"

    def no_sync(self, model: nn.Module) -> AbstractContextManager[None]:
        """DDP's ``no_sync``: no all-reduce for a micro-batch that is not the step's last."""
        return self.accelerator.no_sync(model)
