"""The aggregation strategies of ``federated.strategy.name``: a registry of Flower strategies.

Each entry names its Flower class (``flwr.serverapp.strategy``), the ``federated.strategy``
options it takes, how they map to the class's arguments, and the attributes that hold its
server state (saved with every round for resume). Nothing here imports flwr: ``build``
does, inside the function. A new strategy is one :class:`StrategySpec` and one
:func:`register` call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StrategySpec:
    """One strategy: its Flower class, accepted options and server-state attributes."""

    name: str
    flower_class: str
    description: str
    options: dict[str, str] = field(default_factory=dict)  # config key -> Flower argument
    state: tuple[str, ...] = ()  # attributes holding server state (arrays)


STRATEGIES: dict[str, StrategySpec] = {}


def register(spec: StrategySpec) -> None:
    """Add ``spec`` to :data:`STRATEGIES` (also from outside tunelab)."""
    STRATEGIES[spec.name] = spec


_SERVER_OPT = {"server_lr": "eta", "tau": "tau"}
_ADAPTIVE = {**_SERVER_OPT, "beta_1": "beta_1", "beta_2": "beta_2"}

for _spec in (
    StrategySpec("fedavg", "FedAvg", "weighted average of the client models"),
    StrategySpec(
        "fedprox",
        "FedProx",
        "FedAvg; each client adds (mu/2)*||w - w_global||^2 to its loss",
        {"mu": "proximal_mu"},
    ),
    StrategySpec(
        "fedadam", "FedAdam", "server-side Adam on the averaged update", _ADAPTIVE, ("m_t", "v_t")
    ),
    StrategySpec(
        "fedyogi", "FedYogi", "server-side Yogi on the averaged update", _ADAPTIVE, ("m_t", "v_t")
    ),
    StrategySpec(
        "fedadagrad",
        "FedAdagrad",
        "server-side Adagrad on the averaged update",
        _SERVER_OPT,
        ("m_t", "v_t"),
    ),
    StrategySpec(
        "fedavgm",
        "FedAvgM",
        "FedAvg with server momentum",
        {"server_lr": "server_learning_rate", "server_momentum": "server_momentum"},
        ("momentum_vector",),
    ),
    StrategySpec("fedmedian", "FedMedian", "coordinate-wise median (robust to outliers)"),
    StrategySpec(
        "fedtrimmedavg",
        "FedTrimmedAvg",
        "coordinate-wise mean without the largest and smallest trim_fraction (robust)",
        {"trim_fraction": "beta"},
    ),
):
    register(_spec)


def build(
    name: str, options: dict[str, Any], clients: int, dp: dict[str, Any] | None = None
) -> Any:
    """The Flower strategy ``name`` with ``options`` (only those it takes), wrapped in
    Flower's server-side fixed-clipping DP strategy when ``dp`` is given."""
    from flwr.serverapp import strategy as flower

    spec = STRATEGIES[name]
    kwargs = {spec.options[key]: value for key, value in options.items() if key in spec.options}
    built = getattr(flower, spec.flower_class)(
        fraction_train=1.0,  # tunelab picks the round's clients (seeded); see server.py
        fraction_evaluate=0.0,
        min_train_nodes=1,
        min_available_nodes=clients,
        **kwargs,
    )
    if dp is None:
        return built
    return flower.DifferentialPrivacyServerSideFixedClipping(
        built, dp["noise_multiplier"], dp["clipping_norm"], dp["sampled_clients"]
    )
