"""The Flower apps of the deployment engine, named in a Flower app's ``pyproject.toml``
(``examples/federated-app``): ``tunelab.federated.apps:server_app`` and ``:client_app``.

The ServerApp reads the tunelab config named by the run config key ``config``
(``flwr run APP CONNECTION --run-config "config='/path/run.yaml'"``) and does what
``tunelab federated`` does in simulation (:func:`tunelab.federated.runner.serve`); each
SuperNode's ClientApp trains on its own data (``--node-config "partition-id=0
data-path='...'"``).
"""

from __future__ import annotations

from typing import Any

from flwr.serverapp import ServerApp

from tunelab.federated.client import client_app
from tunelab.federated.engine import quiet_flower

quiet_flower()
server_app = ServerApp()

__all__ = ["client_app", "server_app"]


@server_app.main()
def main(grid: Any, context: Any) -> None:
    """Run the federated config named by the run config's ``config`` key."""
    from rich.console import Console

    from tunelab.config import load_config
    from tunelab.errors import TunelabError
    from tunelab.federated.runner import serve

    path = context.run_config.get("config")
    if not path:
        raise TunelabError(
            "the Flower run config has no 'config' (the tunelab YAML); run: flwr run APP "
            "CONNECTION --run-config \"config='/path/run.yaml'\""
        )
    cfg = load_config(str(path))
    if cfg.federated is None:
        raise TunelabError(f"{path} has no federated: section (docs/federated.md)")
    serve(grid, cfg, None, Console())
