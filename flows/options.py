"""Command-line options derived from `RunParams`, and the options every run command shares.

Each RunParams field becomes one option: `--node-threshold` for `node_threshold` (or the
field's own `flag`, plus its `aliases`), typed from the default, checked by the field's check,
with the field's help. A list setting may declare further options that each add one item
(`ListFlag`: `--logit-diff A B` adds a logit difference to `targets`, after the `--target`s).
Nothing here restates a default or a range.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import click

from circuitflow.attribution.params import ListFlag, RunParams

STORE_HELP = (
    "Store root, a path or fsspec URL [default: $CIRCUITFLOW_STORE, else ./.circuitflow/store]"
)


class IntOrWord(click.ParamType):
    """An integer, or the word that means no limit (None): `--max-feature-nodes all`."""

    name = "integer"

    def __init__(self, word: str) -> None:
        self.word = word

    def get_metavar(self, param: click.Parameter, *args: Any, **kwargs: Any) -> str:
        return f"INTEGER|{self.word}"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | None:
        if value is None or isinstance(value, int) or value == self.word:
            return None if value == self.word else value
        try:
            return int(value)
        except ValueError:
            self.fail(f"must be a positive integer or {self.word!r}, got {value!r}", param, ctx)


def _option(field: dataclasses.Field) -> Callable:
    meta = field.metadata
    flag = meta["flag"] or "--" + field.name.replace("_", "-")
    if isinstance(field.default, bool):  # a switch: --validate
        return click.option(flag, *meta["aliases"], field.name, is_flag=True, help=meta["help"])
    multiple = isinstance(field.default, tuple)
    if meta["unlimited"]:
        kind = IntOrWord(meta["unlimited"])
    elif meta["choices"]:
        kind: Any = click.Choice(meta["choices"])
    elif multiple:
        kind = str
    elif field.default is None or isinstance(field.default, int):
        kind = int
    else:
        kind = float

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        problem = meta["check"](tuple(value) if multiple else value)
        if problem:
            raise click.BadParameter(problem)
        return value

    return click.option(
        flag,
        *meta["aliases"],
        field.name,
        type=kind,
        multiple=multiple,
        default=None if multiple else field.default,
        show_default=not multiple and field.default is not None,
        callback=check,
        help=meta["help"] + (" Repeatable." if multiple else ""),
    )


def _more_dest(field: dataclasses.Field, more: ListFlag) -> str:
    return f"{field.name}__{more.flag.lstrip('-').replace('-', '_')}"


def _more_option(field: dataclasses.Field, more: ListFlag) -> Callable:
    """A repeatable option whose every use adds `more.item(*values)` to the list setting."""

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            return tuple(more.item(*values) for values in value)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None

    return click.option(
        more.flag,
        _more_dest(field, more),
        nargs=len(more.metavars),
        metavar=" ".join(more.metavars),
        multiple=True,
        callback=check,
        help=more.help,
    )


def checked(name: str) -> Callable:
    """A click callback that checks a value given for the RunParams field `name`."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            problem = RunParams.__dataclass_fields__[name].metadata["check"](value)
            if problem:
                raise click.BadParameter(problem)
        return value

    return callback


def param_option(name: str) -> Callable:
    """The option of one RunParams field (for commands that take only a few settings)."""
    return _option(RunParams.__dataclass_fields__[name])


def param_options(command: Callable) -> Callable:
    """Add one option per RunParams field to a click command."""
    for field in reversed(dataclasses.fields(RunParams)):
        for more in reversed(field.metadata["more"]):
            command = _more_option(field, more)(command)
        command = _option(field)(command)
    return command


def params_from(kwargs: dict[str, Any]) -> RunParams:
    """The RunParams of a command's parsed options (and remove them from `kwargs`)."""
    values = {}
    for field in dataclasses.fields(RunParams):
        value = kwargs.pop(field.name)
        if isinstance(field.default, tuple):
            value = tuple(value or ())
            for more in field.metadata["more"]:
                value += tuple(kwargs.pop(_more_dest(field, more)) or ())
        values[field.name] = value
    return RunParams(**values)


DEVICE_OPTION = click.option(
    "--device",
    default="auto",
    show_default=True,
    metavar="auto|cpu|cuda|cuda:N|mps",
    help="Where the model runs: auto is CUDA when there is a GPU, else CPU. Not part of the "
    "stored stages' keys (CPU and GPU agree within float tolerance).",
)


def setup_options(command: Callable) -> Callable:
    """--model, --transcoders, --store, --device and --verbose."""
    options = [
        click.option(
            "-m",
            "--model",
            default=None,
            metavar="NAME|DIR",
            help="Model directory or TransformerLens name [default: the built-in capitals-4l].",
        ),
        click.option(
            "-t",
            "--transcoders",
            "--transcoder_set",
            "transcoders",
            default=None,
            metavar="plt|clt|DIR",
            help="Transcoder preset of the model directory, a directory, or a hub id "
            "[default: plt].",
        ),
        click.option("--store", "store_url", default=None, metavar="URL", help=STORE_HELP),
        DEVICE_OPTION,
        click.option("--verbose", is_flag=True, help="Show Prefect's logs."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def run_options(command: Callable) -> Callable:
    """Everything a run command takes: the setup options and every run setting."""
    return setup_options(param_options(command))


def _memory_size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    from circuitflow.attribution.memory import parse_size

    try:
        return None if value is None else parse_size(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def memory_options(command: Callable) -> Callable:
    """--max-memory, --offload and --lazy-encoder: how a run may use memory (no key changes)."""
    options = [
        click.option(
            "--max-memory",
            default=None,
            metavar="SIZE",
            callback=_memory_size,
            help="Refuse a run whose estimated peak memory is larger (e.g. 8GB), with what "
            "dominates it; checked after the forward pass, before the backward passes.",
        ),
        click.option(
            "--offload",
            type=click.Choice(["cpu", "disk"]),
            default=None,
            help="Where the transcoders wait between uses: cpu (host memory, moved to the "
            "device per layer; on a CPU-only run they are there already, so nothing changes) "
            "or disk (encoders and decoders read from their files on each use).",
        ),
        click.option(
            "--lazy-encoder",
            is_flag=True,
            help="Read each layer's encoder from its file when used, not all at load.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def memory_from(kwargs: dict[str, Any]):
    """The `MemoryOptions` of a command's parsed options (and remove them from `kwargs`)."""
    from circuitflow.tasks.runtime import MemoryOptions

    return MemoryOptions(
        max_memory=kwargs.pop("max_memory"),
        offload=kwargs.pop("offload"),
        lazy_encoder=kwargs.pop("lazy_encoder"),
    )
