"""``federate(cfg)``: a federated run on Flower, ending in an ordinary tunelab run directory.

The server side (:func:`serve`) runs in this process for the simulation engine and in the
SuperLink's ServerApp process for the deployment engine (``tunelab.federated.apps``); the
clients are :mod:`tunelab.federated.client`. What the run leaves is what ``tunelab train``
leaves (``model/`` from the best round, ``metrics.jsonl`` with a ``round`` on every row,
TensorBoard, ``train_summary.json`` with a ``federated`` block, the final eval, the model
card), plus ``checkpoints/round-N/``.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from rich.console import Console

from tunelab.config import RunConfig, dump_config
from tunelab.errors import TunelabError
from tunelab.federated.checkpoints import (
    federated_hash,
    load_round,
    load_strategy_state,
    resume_round,
    round_dirs,
    save_round,
)
from tunelab.federated.engine import quiet_flower, require_flower, simulate
from tunelab.federated.partition import label_counts, partition_rows
from tunelab.federated.server import (
    RoundOutcome,
    config_record,
    handshake,
    print_failures,
    round_line,
    run_round,
    wait_for_nodes,
)
from tunelab.federated.strategies import build
from tunelab.io import recover_dir
from tunelab.train.early_stopping import EarlyStopping
from tunelab.train.run import TrainResult


def federate(
    cfg: RunConfig, resume: bool | None = None, console: Console | None = None
) -> TrainResult:
    """Run ``cfg``'s federated training on the configured engine; see the module docstring."""
    from tunelab.preflight import check_run

    console = console or Console()
    if cfg.federated is None:
        raise TunelabError(
            "the config has no federated: section; add one (docs/federated.md) or use tunelab train"
        )
    require_flower()
    if cfg.federated.engine == "deployment":
        raise TunelabError(
            "federated.engine is deployment: start the SuperLink and SuperNodes and run "
            "`flwr run` as docs/federated.md shows, or set federated.engine: simulation"
        )
    check_run(cfg, console)
    quiet_flower()
    return simulate(cfg, lambda grid: serve(grid, cfg, resume, console))


def start_dir(cfg: RunConfig, resume: bool | None, console: Console) -> Any:
    """The round checkpoint to resume from, or None after clearing an earlier run's outputs."""
    from tunelab.train.previous_run import check_no_earlier_results, clear_outputs

    recover_dir(cfg.run_dir / "model")
    latest = resume_round(cfg, resume)
    if latest is None:
        if resume is None:
            check_no_earlier_results(cfg.run_dir)
        removed = clear_outputs(cfg.run_dir)
        if removed:
            console.print(
                f"starting over in {cfg.run_dir}: removed {', '.join(removed)}", soft_wrap=True
            )
    return latest


def partition_report(cfg: RunConfig, train_rows: Any) -> dict[str, Any]:
    """Rows (and labels) per client; errors early for a partition that cannot be made."""
    fed = cfg.federated
    if fed.partition.kind == "files":
        return {"kind": "files", "files": fed.partition.files}
    if fed.partition.kind == "column":
        from tunelab.federated.columns import column_groups

        return {"kind": "column", "rows": [len(group) for group in column_groups(cfg)]}
    labels = train_rows["labels"] if cfg.task == "classification" else None
    parts = partition_rows(
        fed.partition.kind,
        fed.clients,
        len(train_rows),
        labels,
        fed.partition.alpha,
        fed.partition.seed,
    )
    return {
        "kind": fed.partition.kind,
        "rows": [len(part) for part in parts],
        "labels": label_counts(parts, labels),
    }


def serve(grid: Any, cfg: RunConfig, resume: bool | None, console: Console) -> TrainResult:
    """The ServerApp's work: prepare, handshake, the rounds, then the run's results."""
    from accelerate.utils import set_seed

    from tunelab.data import prepare_data
    from tunelab.federated.transport import fingerprint, in_order, load_arrays, model_arrays
    from tunelab.models import load_tokenizer
    from tunelab.preflight import check_splits
    from tunelab.train.monitor import Monitor, truncate_metrics
    from tunelab.train.run import build_model, make_backend

    started = time.perf_counter()
    fed = cfg.federated
    backend = make_backend(cfg, console)
    resume_from = start_dir(cfg, resume, console)
    tokenizer = load_tokenizer(cfg.model)
    prepared = prepare_data(cfg, tokenizer)
    check_splits(cfg, prepared.splits)
    partitions = partition_report(cfg, prepared.splits["train"])
    set_seed(cfg.train.seed)  # as each client does: newly initialised heads match
    model = build_model(cfg, prepared.label_names)
    base_print = fingerprint(model)
    dump_config(cfg, cfg.run_dir / "config.yaml")
    validator = global_validator(cfg, prepared, tokenizer.pad_token_id, backend.accelerator.device)

    config = config_record(cfg, base_print)
    nodes = wait_for_nodes(grid, fed.clients)
    by_partition = handshake(grid, nodes, config, base_print, fed.round_timeout_s)
    missing = sorted(set(range(fed.clients)) - set(by_partition))
    if missing:
        raise TunelabError(f"no node serves partition-id {missing}; start one SuperNode per client")
    dp = None
    if fed.privacy is not None:
        dp = {**fed.privacy.model_dump(), "sampled_clients": fed.clients_per_round}
    strategy = build(fed.strategy.name, fed.strategy.options(), fed.clients, dp)

    arrays = model_arrays(model)
    keys = list(arrays.keys())
    stopper, history, start = EarlyStopping(cfg.train.early_stopping), [], 0
    if resume_from is not None:
        arrays, server_state, state = load_round(resume_from)
        arrays = in_order(arrays, keys)
        load_strategy_state(strategy, server_state, state["strategy_state"])
        stopper.load_state_dict(state["early_stopping"])
        history, start = state["history"], state["round"]
        truncate_metrics(cfg.run_dir, start)
        console.print(f"resuming after round {start} from {resume_from}", soft_wrap=True)
    monitor = Monitor(cfg.run_dir, backend.accelerator, console, fed.rounds, start)
    reason = "completed"
    for server_round in range(start + 1, fed.rounds + 1):
        outcome = run_round(grid, strategy, cfg, server_round, arrays, config, by_partition)
        arrays = in_order(outcome.arrays, keys)
        print_failures(console, server_round, outcome.failures)
        metrics = {}
        if validator is not None:
            load_arrays(model, arrays)
            metrics = validator(model)
        improved = bool(metrics) and stopper.update(metric_of(metrics, cfg), server_round)
        log_round(monitor, server_round, outcome, metrics, improved)
        history.append(round_history(server_round, outcome))
        state = {
            "federated_hash": federated_hash(cfg),
            "early_stopping": stopper.state_dict(),
            "history": history,
        }
        keep = {stopper.best_step} if stopper.best_step is not None else set()
        save_round(cfg.run_dir, server_round, arrays, strategy, state, keep, cfg.train.keep_last)
        console.print(
            round_line(server_round, fed.rounds, outcome, metrics), soft_wrap=True, highlight=False
        )
        if stopper.should_stop:
            reason = "early_stopped"
            console.print(
                f"early stopping after round {server_round} ({stopper.describe()} = best round)"
            )
            break
    result = finish(
        cfg, (model, tokenizer, prepared), stopper, history, partitions, reason, started, console
    )
    backend.accelerator.end_training()  # flush and close the trackers (TensorBoard)
    return result


def global_validator(cfg: RunConfig, prepared: Any, pad_token_id: int, device: Any) -> Any:
    """``model -> metrics`` on the global validation split (None without one)."""
    from tunelab.train.collate import PadCollator
    from tunelab.train.validate import make_validator, validation_loader

    if "validation" not in prepared.splits:
        return None
    batch_size = cfg.train.eval_batch_size or 2 * cfg.train.batch_size
    loader = validation_loader(prepared.splits["validation"], PadCollator(pad_token_id), batch_size)
    validate = make_validator(loader, cfg.task, device)

    def run(model: Any) -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            metrics = validate(model.to(device))
        model.train()
        return metrics

    return run


def metric_of(metrics: dict[str, float], cfg: RunConfig) -> float:
    from tunelab.train.loop import metric_value

    return metric_value(metrics, cfg.train)


def log_round(
    monitor: Any,
    server_round: int,
    outcome: RoundOutcome,
    metrics: dict[str, float],
    improved: bool,
) -> None:
    """metrics.jsonl / TensorBoard rows of a round: each client, the aggregate, the global eval."""
    for client in outcome.client_metrics:
        monitor.log("client", server_round, {"round": server_round, **client})
    monitor.log(
        "train",
        server_round,
        {
            "round": server_round,
            "loss": outcome.train_loss,
            "clients": len(outcome.client_metrics),
            "failed_clients": len(outcome.failures),
            "bytes_sent": outcome.bytes_sent,
            "bytes_received": outcome.bytes_received,
        },
    )
    if metrics:
        monitor.log("eval", server_round, {"round": server_round, **metrics, "is_best": improved})


def round_history(server_round: int, outcome: RoundOutcome) -> dict[str, Any]:
    return {
        "round": server_round,
        "clients": sorted(c["client"] for c in outcome.client_metrics),
        "failures": outcome.failures,
        "bytes_sent": outcome.bytes_sent,
        "bytes_received": outcome.bytes_received,
        "train_loss": outcome.train_loss,
    }


def finish(
    cfg: RunConfig,
    built: tuple[Any, Any, Any],
    stopper: EarlyStopping,
    history: list[dict[str, Any]],
    partitions: dict[str, Any],
    reason: str,
    started: float,
    console: Console,
) -> TrainResult:
    """Load the best round (else the last), then write the run's results as training does."""
    from tunelab.federated.transport import load_arrays
    from tunelab.methods import trainable_summary
    from tunelab.train.monitor import peak_memory_mb
    from tunelab.train.results import save_results

    model, tokenizer, prepared = built
    rounds = round_dirs(cfg.run_dir)
    best = stopper.best_step if stopper.best_step is not None else max(rounds)
    load_arrays(model, load_round(rounds[best])[0])
    params = trainable_summary(model)
    fed = cfg.federated
    summary = {
        "wall_time_s": time.perf_counter() - started,
        "steps": history[-1]["round"] if history else 0,
        "rounds": history[-1]["round"] if history else 0,
        "stop_reason": reason,
        "tokens_per_s": 0.0,
        "peak_memory_mb": peak_memory_mb(),
        "best_metric_name": cfg.train.early_stopping.metric,
        "best_metric": stopper.best,
        "best_step": best,
        "best_round": best,
        "trainable_params": params.trainable,
        "total_params": params.total,
        "precision": cfg.train.precision,
        "federated_hash": federated_hash(cfg),
        "federated": {
            "engine": fed.engine,
            "clients": fed.clients,
            "clients_per_round": fed.clients_per_round,
            "strategy": {"name": fed.strategy.name, **fed.strategy.options()},
            "privacy": None
            if fed.privacy is None
            else {
                **fed.privacy.model_dump(),
                "mechanism": "server-side fixed clipping (Flower)",
                "sampled_clients": fed.clients_per_round,
                "rounds": len(history),
            },
            "partition": partitions,
            "trainable_bytes": 4 * params.trainable,
            "full_model_bytes": 4 * params.total,
            "history": history,
        },
    }
    final_metrics = save_results(cfg, model, tokenizer, prepared, summary, stopper, console)
    return TrainResult(
        cfg.run_dir,
        cfg.run_dir / "model",
        reason,
        summary["rounds"],
        stopper.best,
        best,
        summary,
        final_metrics,
    )
