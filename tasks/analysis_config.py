"""Analysis configs: which analysis points are on, and the functions each calls (YAML files in
configs/analysis/).

    description: what this analysis shows
    points:
      precompute_end: shapes                   # one function: a ready function's name
      targets_end:                             # several, with options
        - shapes
        - function: topk
          options: {values: [probabilities], k: 10}
      influence_iteration:
        - function: my_package.my_module:my_function   # your code (see below)
        - function: helpers.py:collect                 # or a file beside the config
      prune_nodes_end: false                   # listed, but off
      prune_edges_end:
        enabled: false                         # the long form, to switch a list off
        functions: [shapes]

Ready functions (`attribution.analysis_functions`): shapes, topk, trace. An option named `values`
lists which of the point's values the function looks at; names the point does not offer are
refused here, as are unknown points, options a function does not take, and functions that do
not import.

Code execution: a `module:function` or `file.py:function` entry imports that module and calls
that function inside the attribution, with the run's tensors: it is code execution, like
`python -c`. Use configs you trust. Nothing else in a config runs code: the file is read with
`yaml.safe_load`, the ready functions are looked up by name, and options are plain data.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from circuitflow.attribution import analysis_functions
from circuitflow.attribution.analysis import POINTS, AnalysisFunction, Attachment
from circuitflow.store import canonical_json
from circuitflow.tasks.declare import Stage

READY: dict[str, AnalysisFunction] = {
    "shapes": analysis_functions.shapes,
    "topk": analysis_functions.topk,
    "trace": analysis_functions.trace,
}
_REFERENCE = re.compile(r"^(?P<module>[^:\s]+):(?P<name>[A-Za-z_][A-Za-z0-9_.]*)$")
TOP_KEYS = ("description", "points")


class AnalysisConfigError(ValueError):
    """An analysis config that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class FunctionSpec:
    """One function of a point: a ready function's name or `module:function`, and options."""

    function: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AnalysisConfig:
    """The points that are on and their functions, as plain data (it travels as a flow
    parameter); `attachments()` imports the functions.

    base_dir: where `file.py:function` references are looked for (the config's directory)
    """

    points: dict[str, tuple[FunctionSpec, ...]]
    description: str = ""
    source: str = "<analysis config>"
    base_dir: str = "."

    def describe(self) -> dict[str, Any]:
        """The points and functions as plain JSON data (stored beside the captured tensors)."""
        return {
            point: [{"function": f.function, "options": f.options} for f in specs]
            for point, specs in self.points.items()
        }

    def attachments(self) -> list[Attachment]:
        """Every enabled function, imported and checked (AnalysisConfigError otherwise)."""
        out = []
        for point, specs in self.points.items():
            for i, spec in enumerate(specs):
                where = f"{self.source}: points.{point}[{i}]"
                function = resolve_function(spec.function, Path(self.base_dir), where)
                _check_options(function, spec, point, where)
                out.append(Attachment(point, function, dict(spec.options), name=spec.function))
        return out


def load_analysis(path: str | Path, pipeline: Sequence[Stage] | None = None) -> AnalysisConfig:
    """Read and check an analysis config file, importing its functions to check them.

    With a `pipeline`, points that none of its stages fires are refused.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise AnalysisConfigError(f"cannot read analysis config {path}: {error}") from None
    except yaml.YAMLError as error:
        raise AnalysisConfigError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from None
    fired = None if pipeline is None else {p for stage in pipeline for p in stage.points}
    config = parse_analysis(data, str(path), str(path.resolve().parent), fired)
    config.attachments()
    return config


def parse_analysis(
    data: Any,
    source: str = "<analysis config>",
    base_dir: str = ".",
    fired: Collection[str] | None = None,
) -> AnalysisConfig:
    """An AnalysisConfig from parsed YAML, checked for shape (functions are not imported).

    fired: the points the pipeline's stages fire; others are refused (None: no check).
    """
    if not isinstance(data, Mapping):
        raise AnalysisConfigError(f"{source}: expected a mapping with 'points', got {_kind(data)}")
    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise AnalysisConfigError(
            f"{source}: unknown key {unknown[0]!r}; a config has: {', '.join(TOP_KEYS)}"
        )
    points_data = data.get("points")
    if not isinstance(points_data, Mapping) or not points_data:
        raise AnalysisConfigError(f"{source}: 'points' must map point names to functions")
    points: dict[str, tuple[FunctionSpec, ...]] = {}
    for point, entry in points_data.items():
        where = f"{source}: points.{point}"
        _check_point(point, where, fired)
        specs = _point_functions(entry, where)
        if specs:
            points[point] = specs
    description = data.get("description") or ""
    return AnalysisConfig(points, str(description), source, base_dir)


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _check_point(point: Any, where: str, fired: Collection[str] | None) -> None:
    if point not in POINTS:
        near = difflib.get_close_matches(str(point), list(POINTS), n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise AnalysisConfigError(f"{where}: unknown point; {hint}points are: {', '.join(POINTS)}")
    if fired is not None and point not in fired:
        raise AnalysisConfigError(f"{where}: no stage of the pipeline fires this point")


def _point_functions(entry: Any, where: str) -> tuple[FunctionSpec, ...]:
    """A point's entry: false, a function, a list of them, or {enabled, functions}."""
    if entry is False or entry is None:
        return ()
    if isinstance(entry, Mapping) and ("enabled" in entry or "functions" in entry):
        unknown = [k for k in entry if k not in ("enabled", "functions")]
        if unknown:
            raise AnalysisConfigError(f"{where}: unknown key {unknown[0]!r} (enabled, functions)")
        if not isinstance(entry.get("enabled", True), bool):
            raise AnalysisConfigError(f"{where}.enabled: expected true or false")
        if not entry.get("enabled", True):
            return ()
        entry = entry.get("functions")
    items = entry if isinstance(entry, list) else [entry]
    if not items:
        raise AnalysisConfigError(f"{where}: no function given (use false to switch it off)")
    return tuple(_function_spec(item, f"{where}[{i}]") for i, item in enumerate(items))


def _function_spec(item: Any, where: str) -> FunctionSpec:
    if isinstance(item, str):
        item = {"function": item}
    if not isinstance(item, Mapping) or not isinstance(item.get("function"), str):
        raise AnalysisConfigError(
            f"{where}: expected a function name or {{function: ..., options: {{...}}}}"
        )
    unknown = [k for k in item if k not in ("function", "options")]
    if unknown:
        raise AnalysisConfigError(f"{where}: unknown key {unknown[0]!r} (function, options)")
    name, options = item["function"].strip(), item.get("options") or {}
    if name not in READY and not _REFERENCE.match(name):
        raise AnalysisConfigError(
            f"{where}: {name!r} is neither a ready function ({', '.join(READY)}) "
            "nor a module:function reference"
        )
    if not isinstance(options, Mapping):
        raise AnalysisConfigError(f"{where}.options: expected a mapping")
    try:
        canonical_json(options)
    except TypeError as error:
        raise AnalysisConfigError(f"{where}.options: {error}") from None
    return FunctionSpec(name, dict(options))


def resolve_function(reference: str, base_dir: Path, where: str) -> AnalysisFunction:
    """A ready function by name, or the function a `module:function` reference names.

    This imports the module: code execution (see the module docs).
    """
    if reference in READY:
        return READY[reference]
    match = _REFERENCE.match(reference)
    if match is None:
        raise AnalysisConfigError(f"{where}: {reference!r} is not module:function")
    module_name, attr = match["module"], match["name"]
    try:
        module = _import(module_name, base_dir)
    except Exception as error:  # a user's module: any error while importing it
        raise AnalysisConfigError(
            f"{where}: cannot import {module_name!r} ({type(error).__name__}: {error})"
        ) from None
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise AnalysisConfigError(f"{where}: {module_name!r} has no function {attr!r}")
    return target


def _import(module_name: str, base_dir: Path) -> Any:
    if not module_name.endswith(".py"):
        return importlib.import_module(module_name)
    path = Path(module_name).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise FileNotFoundError(f"no file {path}")
    name = "circuitflow_analysis_" + re.sub(r"\W", "_", str(path.resolve()))
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def _check_options(function: AnalysisFunction, spec: FunctionSpec, point: str, where: str) -> None:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # builtins without a signature: nothing to check
        return
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    keywords = [
        name
        for name, p in list(parameters.items())[1:]
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    for option in spec.options:
        if not takes_any and option not in keywords:
            raise AnalysisConfigError(
                f"{where}.options: {spec.function} takes no option {option!r}; "
                f"it takes: {', '.join(keywords) or 'none'}"
            )
    values = spec.options.get("values")
    if values is not None:
        offered = [v.name for v in POINTS[point].values]
        names = [values] if isinstance(values, str) else list(values)
        missing = [n for n in names if n not in offered]
        if missing:
            raise AnalysisConfigError(
                f"{where}.options.values: point {point!r} offers no {missing[0]!r}; "
                f"it offers: {', '.join(offered)}"
            )
