"""`circuitflow train-demo`: regenerate the built-in model and its transcoders as a Prefect flow.

    circuitflow train-demo --out models/capitals-4l            # the shipped files (minutes)
    circuitflow train-demo --out /tmp/tiny --quick             # every step, tiny, in seconds
    python -m flows.train_demo --out DIR --config configs/train_demo.yaml

The flow runs the steps of `tasks.training` in order (tokenizer, language model, per-layer
transcoders, cross-layer transcoder, evaluation + MODEL_CARD.md) with progress bars, and
returns the metrics dict. Everything is seeded, so the same config gives the same files.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from circuitflow.flows.settings import configure

# Before torch and Prefect are imported: passive OpenMP waiting (busy-waiting threads made
# training steps 5-10x slower on a shared 2-core machine) and Prefect's quiet defaults
# (`configure` only fills in variables the user has not set).
configure()

import click  # noqa: E402
import torch  # noqa: E402
from prefect import flow  # noqa: E402

from circuitflow.flows.settings import quiet_flows  # noqa: E402
from circuitflow.tasks.training import (  # noqa: E402
    build_tokenizer_task,
    evaluate_task,
    train_model_task,
    train_transcoders_task,
)
from circuitflow.training.config import TrainDemoConfig  # noqa: E402

DEFAULT_OUT = "models/capitals-4l"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "train_demo.yaml"


@flow(name="train-demo")
def train_demo_flow(
    out: str = DEFAULT_OUT, config: dict[str, Any] | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train the built-in model and transcoders into `out`; return every measured metric.

    `config` is a `TrainDemoConfig` as a dict (Prefect records flow parameters, so they are
    kept JSON-like); None means the defaults.
    """
    start = time.perf_counter()
    cfg = (TrainDemoConfig.from_dict(config) if config else TrainDemoConfig()).to_dict()
    build_tokenizer_task(out, cfg)
    training: dict[str, Any] = {"model": train_model_task(out, cfg, progress)}
    for which in ("plt", "clt"):
        training[which] = train_transcoders_task(out, cfg, which, progress)
    training["total_seconds_before_evaluation"] = time.perf_counter() - start
    training["torch_threads"] = torch.get_num_threads()
    metrics = evaluate_task(out, cfg, training)
    return metrics


def _summary(metrics: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    m = metrics["model"]
    lines = [
        f"facts: one-hop {m['accuracy_one_hop']:.1%}, two-hop {m['accuracy_two_hop_trained']:.1%},"
        f" held-out {m['accuracy_two_hop_held_out']:.1%}; seed prompt p(Austin) "
        f"{m['seed_prompt']['probability']:.3f}",
    ]
    for name, t in metrics["transcoders"].items():
        lines.append(
            f"{name}: max FVU {max(t['fvu']):.4f}, active/token "
            f"{', '.join(f'{a:.0f}' for a in t['active_per_token'])}, spliced agreement "
            f"{t['splice']['agreement']:.1%}"
        )
    return "\n".join(lines)


@click.command("train-demo")
@click.option("--out", default=DEFAULT_OUT, show_default=True, help="Output directory.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help=f"YAML TrainDemoConfig (default: {DEFAULT_CONFIG.name} values).",
)
@click.option("--quick", is_flag=True, help="Tiny settings: proves the flow in seconds.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="PyTorch CPU threads (default: PyTorch's choice, one per core).",
)
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def train_demo_command(
    out: str, config_path: str | None, quick: bool, threads: int | None, no_progress: bool
) -> None:
    """Train the built-in model and transcoders from the seed; write MODEL_CARD.md.

    \b
    Example:
      circuitflow train-demo --out models/capitals-4l      # about 10 minutes on 2 cores
      circuitflow train-demo --out /tmp/tiny --quick       # seconds: proves the flow
    """
    if quick and config_path:
        raise click.UsageError("--quick and --config are exclusive")
    if quick:
        cfg = TrainDemoConfig.quick()
    elif config_path:
        cfg = TrainDemoConfig.from_yaml(config_path)
    else:
        cfg = TrainDemoConfig()
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    with quiet_flows():
        metrics = train_demo_flow(out=out, config=cfg.to_dict(), progress=not no_progress)
    click.echo(_summary(metrics))
    click.echo(f"wrote {out} ({time.perf_counter() - start:.0f} s); see {out}/MODEL_CARD.md")


if __name__ == "__main__":
    train_demo_command()
