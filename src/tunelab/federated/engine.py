"""Flower itself: the install hint, quiet settings, and the simulation engine run.

Flower's telemetry, update check and runtime dependency installation are turned off (the
last would ``uv sync`` the app's dependencies, e.g. a CUDA torch), as are Ray's usage stats.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from typing import Any

from tunelab.config import RunConfig
from tunelab.errors import TunelabError

FLOWER_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
}


def require_flower() -> None:
    """A one-line error with the install command when Flower (or Ray) is missing."""
    for module in ("flwr", "ray"):
        if importlib.util.find_spec(module) is None:
            raise TunelabError(
                f"federated training needs {module}: pip install 'tunelab[federated]'"
            )


def quiet_flower() -> None:
    """Flower's and Ray's settings for tunelab (see the module docstring); INFO logs off."""
    for key, value in FLOWER_ENV.items():
        os.environ.setdefault(key, value)
    logging.getLogger("flwr").setLevel(logging.WARNING)


def backend_config(cfg: RunConfig) -> dict[str, Any]:
    """Ray resources: ``client_cpus`` per client (2: one client at a time on 2 cores)."""
    fed = cfg.federated
    cpus = max(os.cpu_count() or 1, int(fed.client_cpus))
    return {
        "client_resources": {"num_cpus": fed.client_cpus, "num_gpus": fed.client_gpus},
        "init_args": {"num_cpus": cpus, "include_dashboard": False, "log_to_driver": False},
    }


def simulate(cfg: RunConfig, serve: Callable[[Any], Any]) -> Any:
    """Run ``serve(grid)`` as the ServerApp with one virtual SuperNode per client."""
    quiet_flower()
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    from tunelab.federated.client import client_app

    results: list[Any] = []
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Any, context: Any) -> None:
        results.append(serve(grid))

    flower_logger = logging.getLogger("flwr")
    previous = flower_logger.level
    flower_logger.setLevel(logging.ERROR)  # the deprecation notice of run_simulation
    try:
        run_simulation(
            server_app, client_app, cfg.federated.clients, backend_config=backend_config(cfg)
        )
    finally:
        flower_logger.setLevel(previous)
    if not results:
        raise TunelabError("the federated run ended without a result (see the log above)")
    return results[0]
