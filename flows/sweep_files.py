"""Sweep definitions: which prompts, and which grid of settings, a sweep runs.

A sweep file is one of:
- plain text: one prompt a line (blank lines and lines starting with # are skipped);
- JSONL: one object a line with a "prompt" field;
- CSV: a header with a "prompt" column;
- YAML (a `SweepConfig`): prompts (inline or from a file beside it) and a grid over thresholds,
  feature budgets and transcoder sets; see configs/sweeps/.

Every prompt runs with every combination of the grid's values.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tasks.runs import RunParams, RunRequest

GRID_KEYS = ("transcoders", "node_threshold", "edge_threshold", "max_feature_nodes")


class SweepFileError(ValueError):
    """A sweep file that cannot be read, with what is wrong in it."""


@dataclass
class SweepConfig:
    """A sweep as YAML: prompts, fixed settings, and a grid of settings to combine."""

    prompts: list[str] = field(default_factory=list)
    prompts_file: str | None = None  # relative to the YAML file
    model: str | None = None
    grid: dict[str, list[Any]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: Path) -> SweepConfig:
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise SweepFileError(f"{path}: a sweep YAML is a mapping (prompts, grid, params)")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SweepFileError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
        config = cls(**data)
        bad = sorted(set(config.grid) - set(GRID_KEYS))
        if bad:
            raise SweepFileError(f"{path}: the grid can vary {list(GRID_KEYS)}, not {bad}")
        return config

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)


@dataclass(frozen=True)
class SweepItem:
    """One run of a sweep: a prompt, its settings, and the transcoders (None: the default)."""

    request: RunRequest
    transcoders: str | None = None


def read_prompts(path: Path) -> list[str]:
    """Prompts from a text, JSONL or CSV file."""
    if not path.is_file():
        raise SweepFileError(f"sweep file {path} not found")
    text = path.read_text()
    if path.suffix == ".jsonl":
        prompts = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise SweepFileError(f"{path}:{number}: not JSON ({error})") from error
            if not isinstance(record, dict) or "prompt" not in record:
                raise SweepFileError(f'{path}:{number}: each line needs a "prompt" field')
            prompts.append(str(record["prompt"]))
        return prompts
    if path.suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or "prompt" not in rows[0]:
            raise SweepFileError(f"{path}: a CSV sweep file needs a 'prompt' column")
        return [row["prompt"] for row in rows]
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def expand(
    path: str | Path, base: RunParams, transcoders: str | None
) -> tuple[list[SweepItem], str | None]:
    """The runs a sweep file asks for (with `base` settings where the file says nothing), and
    the model it names (None: the command line's)."""
    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        config = SweepConfig.from_yaml(path)
        prompts = list(config.prompts)
        if config.prompts_file:
            prompts += read_prompts(path.parent / config.prompts_file)
        base = dataclasses.replace(base, **_params(config.params, path))
        grid, model = config.grid, config.model
    else:
        prompts, grid, model = read_prompts(path), {}, None
    if not prompts:
        raise SweepFileError(f"{path} holds no prompts")
    axes = [(key, list(values)) for key, values in grid.items()]
    items = []
    for combo in itertools.product(*(values for _, values in axes)):
        chosen = dict(zip((key for key, _ in axes), combo, strict=True))
        tc = chosen.pop("transcoders", transcoders)
        params = dataclasses.replace(base, **chosen)
        items += [SweepItem(RunRequest(prompt, params), tc) for prompt in prompts]
    return items, model


def _params(values: dict[str, Any], path: Path) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(RunParams)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SweepFileError(f"{path}: unknown params {unknown}; known: {sorted(known)}")
    if "targets" in values:
        values = values | {"targets": tuple(values["targets"] or ())}
    return values
