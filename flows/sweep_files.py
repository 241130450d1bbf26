"""Sweep definitions: which prompts, and which grid of settings, a sweep runs.

A sweep file is one of:
- plain text: one prompt a line (blank lines and lines starting with # are skipped);
- JSONL: one object a line with a "prompt" field;
- CSV: a header with a "prompt" column (quoted fields may hold newlines);
- YAML (a `SweepConfig`): prompts (inline or from a file beside it), fixed `params` and a `grid`
  of settings to combine; see configs/sweeps/.

The keys `params` and `grid` accept are the fields of `RunParams` (the grid also varies
`transcoders`), checked with RunParams' own checks before anything starts: a wrong key or
value is an error that names the key and its line. Every prompt runs with every combination of
the grid's values.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from circuitflow.attribution.params import ParamError, RunParams
from circuitflow.tasks import RunRequest

GRID_EXTRA = ("transcoders",)  # grid axes beside the RunParams fields


class SweepFileError(ValueError):
    """A sweep file that cannot be read, with what is wrong in it and where."""


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
        text = read_text(path)
        try:
            data = yaml.safe_load(text) or {}
            lines = _key_lines(yaml.compose(text))
        except yaml.YAMLError as error:
            raise SweepFileError(f"{path}: not valid YAML ({error})") from None
        if not isinstance(data, dict):
            raise SweepFileError(f"{path}: a sweep YAML is a mapping (prompts, grid, params)")
        where = lambda *keys: f"{path}:{lines.get(keys, 1)}"  # noqa: E731
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                raise SweepFileError(f"{where(key)}: unknown key {key!r}; known: {known}")
        for key in ("params", "grid"):
            if not isinstance(data.get(key, {}), dict):
                raise SweepFileError(f"{where(key)}: {key} must be a mapping of settings")
        if not isinstance(data.get("prompts", []), list):
            raise SweepFileError(f"{where('prompts')}: prompts must be a list of strings")
        config = cls(**data)
        config.check(where)
        return config

    def check(self, where) -> None:
        """Every params and grid key is a setting, and every value is valid for it."""
        settings = RunParams.names()
        for key, value in self.params.items():
            if key not in settings:
                raise SweepFileError(
                    f"{where('params', key)}: params.{key} is not a run setting; "
                    f"settings are: {', '.join(settings)}"
                )
            _check_value(key, value, where("params", key), "params")
        for key, values in self.grid.items():
            if key not in (*settings, *GRID_EXTRA):
                raise SweepFileError(
                    f"{where('grid', key)}: the grid can vary {', '.join((*GRID_EXTRA, *settings))}"
                    f", not {key!r}"
                )
            if not isinstance(values, list) or not values:
                raise SweepFileError(f"{where('grid', key)}: grid.{key} must be a non-empty list")
            if key not in GRID_EXTRA:
                for value in values:
                    _check_value(key, value, where("grid", key), "grid")

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)


def _check_value(key: str, value: Any, where: str, section: str) -> None:
    try:
        RunParams(**{key: value})
    except ParamError as error:
        raise SweepFileError(f"{where}: {section}.{error}") from None


def _key_lines(node: yaml.Node | None, prefix: tuple = ()) -> dict[tuple, int]:
    """1-based line of every mapping key, by its path of keys (two levels deep)."""
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode) and len(prefix) < 2:
        for key_node, value_node in node.value:
            path = (*prefix, key_node.value)
            lines[path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, path))
    return lines


@dataclass(frozen=True)
class SweepItem:
    """One run of a sweep: a prompt, its settings, and the transcoders (None: the default)."""

    request: RunRequest
    transcoders: str | None = None


def read_text(path: Path) -> str:
    """A sweep file's text (UTF-8, with or without a byte-order mark), or SweepFileError."""
    if not path.is_file():
        raise SweepFileError(f"sweep file {path} not found")
    data = path.read_bytes()
    if b"\x00" in data:
        raise SweepFileError(f"{path} is a binary file, not a sweep file (text, JSONL, CSV, YAML)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise SweepFileError(f"{path}:{line}: not UTF-8 text ({error.reason})") from None


def read_prompts(path: Path) -> list[str]:
    """Prompts from a text, JSONL or CSV file."""
    text = read_text(path)
    if path.suffix == ".jsonl":
        prompts = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise SweepFileError(f"{path}:{number}: not JSON ({error.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                raise SweepFileError(f'{path}:{number}: each line needs a "prompt" string')
            prompts.append(record["prompt"])
        return prompts
    if path.suffix == ".csv":
        try:
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
        except csv.Error as error:
            raise SweepFileError(f"{path}: not valid CSV ({error})") from None
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
        base = base.replace(**config.params)
        grid, model = config.grid, config.model
    else:
        prompts, grid, model = read_prompts(path), {}, None
    if not prompts:
        raise SweepFileError(f"{path} holds no prompts")
    axes = list(grid.items())
    items = []
    for combo in itertools.product(*(values for _, values in axes)):
        chosen = dict(zip((key for key, _ in axes), combo, strict=True))
        tc = chosen.pop("transcoders", transcoders)
        params = base.replace(**chosen)
        items += [SweepItem(RunRequest(prompt, params), tc) for prompt in prompts]
    return items, model
