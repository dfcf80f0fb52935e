"""The ``federated`` section: clients, rounds, partition, strategy, privacy, engine.

Present only for ``tunelab federated``; ``tunelab train`` ignores it. The strategy names
come from :mod:`tunelab.federated.strategies` (a registry that imports nothing heavy).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tunelab.config.section import PositiveInt, Section
from tunelab.federated.strategies import STRATEGIES

STRATEGY_OPTIONS = (
    "mu",
    "server_lr",
    "server_momentum",
    "beta_1",
    "beta_2",
    "tau",
    "trim_fraction",
)


class PartitionConfig(Section):
    """How the train split is shared out among the clients."""

    kind: Literal["iid", "dirichlet", "files", "column"] = Field(
        default="iid",
        description="iid: a seeded shuffle cut into equal parts; dirichlet: per-label shares "
        "drawn from Dirichlet(alpha) (classification only); files: one data file per client; "
        "column: one value of a data column per client.",
    )
    alpha: float = Field(
        default=0.5, gt=0, description="dirichlet: concentration (small = more skewed clients)."
    )
    files: list[str] | None = Field(
        default=None, description="files: one training file per client, in client order."
    )
    column: str | None = Field(
        default=None, description="column: the data column whose values name the clients."
    )
    seed: int = Field(default=42, description="Seed of the partition.")

    @model_validator(mode="after")
    def _files(self) -> PartitionConfig:
        if self.kind == "files" and not self.files:
            raise ValueError("kind files needs files: [one path per client]")
        if self.kind != "files" and self.files:
            raise ValueError(f"files is set but kind is {self.kind!r}; set kind: files")
        if (self.kind == "column") != (self.column is not None):
            raise ValueError("kind column and column: NAME go together")
        return self


class StrategyConfig(Section):
    """The server's aggregation strategy (Flower) and its options."""

    name: str = Field(
        default="fedavg",
        description="fedavg, fedprox, fedadam, fedyogi, fedadagrad, fedavgm, fedmedian or "
        "fedtrimmedavg (see tunelab.federated.strategies).",
    )
    mu: float | None = Field(default=None, ge=0, description="fedprox: proximal coefficient.")
    server_lr: float | None = Field(
        default=None, gt=0, description="fedadam/fedyogi/fedadagrad/fedavgm: server learning rate."
    )
    server_momentum: float | None = Field(
        default=None, ge=0, lt=1, description="fedavgm: server momentum."
    )
    beta_1: float | None = Field(default=None, ge=0, lt=1, description="fedadam/fedyogi: beta_1.")
    beta_2: float | None = Field(default=None, ge=0, lt=1, description="fedadam/fedyogi: beta_2.")
    tau: float | None = Field(
        default=None, gt=0, description="fedadam/fedyogi/fedadagrad: adaptivity (epsilon)."
    )
    trim_fraction: float | None = Field(
        default=None, ge=0, lt=0.5, description="fedtrimmedavg: fraction cut at each end."
    )

    @model_validator(mode="after")
    def _known(self) -> StrategyConfig:
        spec = STRATEGIES.get(self.name)
        if spec is None:
            raise ValueError(f"unknown strategy {self.name!r}; choose one of {sorted(STRATEGIES)}")
        for key in STRATEGY_OPTIONS:
            if getattr(self, key) is not None and key not in spec.options:
                takes = sorted(spec.options) or "no options"
                raise ValueError(f"{key} does not apply to {self.name} (it takes {takes})")
        if self.name == "fedprox" and self.mu is None:
            self.mu = 0.01
        return self

    def options(self) -> dict[str, float]:
        """The options given, by config key."""
        return {
            key: getattr(self, key) for key in STRATEGY_OPTIONS if getattr(self, key) is not None
        }


class PrivacyConfig(Section):
    """Central differential privacy (Flower's server-side fixed clipping)."""

    noise_multiplier: float = Field(
        ge=0,
        le=100,
        description="Gaussian noise std as a multiple of clipping_norm (>= 1: strong).",
    )
    clipping_norm: float = Field(gt=0, description="Each client update is clipped to this L2 norm.")


class FederatedConfig(Section):
    """Federated fine-tuning on Flower (``tunelab federated CONFIG``)."""

    clients: int = Field(default=4, ge=2, le=1000, description="Number of clients.")
    rounds: PositiveInt = Field(default=5, description="Federated rounds.")
    local_steps: PositiveInt | None = Field(
        default=None, description="Optimizer steps per client per round (default 10)."
    )
    local_epochs: PositiveInt | None = Field(
        default=None, description="Passes over the client's data per round (instead of steps)."
    )
    fraction: float = Field(
        default=1.0, gt=0, le=1, description="Fraction of clients picked (seeded) each round."
    )
    partition: PartitionConfig = Field(default_factory=PartitionConfig, description="Partition.")
    strategy: StrategyConfig = Field(default_factory=StrategyConfig, description="Aggregation.")
    privacy: PrivacyConfig | None = Field(
        default=None, description="Differential privacy on the aggregate (None: off)."
    )
    on_client_failure: Literal["skip", "fail"] = Field(
        default="fail",
        description="A client that errors in a round: fail stops the run (earlier rounds "
        "kept, resume continues); skip aggregates the round without it.",
    )
    engine: Literal["simulation", "deployment"] = Field(
        default="simulation",
        description="simulation: Flower's simulation engine on this machine; deployment: "
        "a SuperLink and SuperNodes (docs/federated.md).",
    )
    client_cpus: float = Field(
        default=2.0,
        gt=0,
        description="Simulation: CPUs reserved per client (2: one at a time on 2 cores).",
    )
    client_gpus: float = Field(default=0.0, ge=0, description="Simulation: GPUs per client.")
    round_timeout_s: float = Field(default=3600.0, gt=0, description="Wait at most this per round.")

    @model_validator(mode="after")
    def _local_work(self) -> FederatedConfig:
        if self.local_steps and self.local_epochs:
            raise ValueError("give local_steps or local_epochs, not both")
        if self.local_steps is None and self.local_epochs is None:
            self.local_steps = 10
        if self.partition.files and len(self.partition.files) != self.clients:
            raise ValueError(
                f"partition.files lists {len(self.partition.files)} files for {self.clients} "
                "clients; give one file per client"
            )
        return self

    @property
    def clients_per_round(self) -> int:
        """Clients picked each round: ``fraction`` of ``clients``, at least one."""
        return max(1, round(self.fraction * self.clients))
