"""A comparison grid: one base run configuration, many cells that differ only in method.

    recipe.yaml -> CompareConfig -> [Cell(name, RunConfig), ...]

Every cell shares the base's model, data, evaluation and budget; a cell sets its method
(`none` = the untuned base model, evaluated without training), the method's settings and a
few `train` overrides (typically the learning rate, which differs between methods):

    output_dir: runs/quickstart
    base:                       # a RunConfig recipe (model, data, train, generation)
      model: {name_or_path: "bergamot:pt-en"}
      ...
    cells:
      - {name: baseline, method: none}
      - {name: full, method: full, train: {learning_rate: 5.0e-5}}
      - {name: lora-r8, method: lora, settings: {rank: 8}}

Each cell's run folder is `<output_dir>/cells/<name>`. Problems in every cell are collected
and reported together, as for a single recipe.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mtadapt.config import ConfigError, RunConfig, config_problems, config_to_dict, resolve_corpus_paths
from mtadapt.config_io import Builder, parse_override, read_yaml_mapping, set_path, where, yaml_lines
from mtadapt.evaluate.metrics import MIN_SIGNIFICANT_RESAMPLES
from mtadapt.methods.registry import METHOD_NAMES

MethodName = Literal[("none", *METHOD_NAMES)]  # type: ignore[valid-type]  # "none": the untuned base
_CELL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class CellSpec:
    """One cell of the grid, as written in the recipe.

    Attributes:
        name: Unique name; also the cell's run folder (`[A-Za-z0-9_.-]`).
        method: A registered method, or `none` for the untuned base model.
        settings: The method's settings (e.g. `rank: 8` for LoRA).
        train: Overrides of the base's `train` section for this cell (e.g. `learning_rate`).
    """

    name: str = ""
    method: MethodName = "full"
    settings: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class CompareConfig:
    """A comparison recipe.

    Attributes:
        output_dir: Folder for results.jsonl, report.md, report.html, plots and cells/.
        title: Heading of the report.
        base: The shared run configuration (a RunConfig recipe: model, data, train, ...).
        cells: The grid, run in this order.
        n_bootstrap: Resamples for the 95% confidence intervals and the paired tests (0: no
            intervals, allowed only without `none` and `full` cells, which the paired tests need).
        engine: What decodes the test set (`inference.engine`): pytorch, or ctranslate2 (each
            cell's model merged and converted; cells whose adapters do not merge, and
            Marian-native models, decode with pytorch, and their rows say so).
        compute_type: ctranslate2's compute type (default: int8 on CPU, int8_float16 on CUDA).
    """

    output_dir: str = "runs/compare"
    title: str = "mtadapt compare"
    base: dict[str, Any] = field(default_factory=dict)
    cells: list[CellSpec] = field(default_factory=list)
    n_bootstrap: int = 1000
    engine: Literal["pytorch", "ctranslate2"] = "pytorch"
    compute_type: Literal["int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float32", "float16",
                          "bfloat16"] | None = None


@dataclass
class Cell:
    """A resolved cell: its validated run configuration and a fingerprint of it.

    Attributes:
        spec: As written in the recipe.
        config: The full RunConfig (for `none`, `method` is irrelevant and training is skipped).
        fingerprint: Hash of the cell's configuration; a finished result with another
            fingerprint is stale and the cell runs again.
    """

    spec: CellSpec
    config: RunConfig
    fingerprint: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def trains(self) -> bool:
        return self.spec.method != "none"


def cell_config_dict(base: dict[str, Any], spec: CellSpec, output_dir: str | Path, has_baseline: bool = False) -> dict[str, Any]:
    """The base tree with the cell's method, settings, train overrides and run folder.

    Args:
        has_baseline: the grid has an untuned (`none`) cell: its dev score is step 0 of every
            curve, so trained cells do not score the same base again (`train.eval_at_start`
            off unless the recipe sets it).
    """
    tree = copy.deepcopy(base)
    tree["method"] = {"name": "full" if spec.method == "none" else spec.method, "settings": dict(spec.settings)}
    train = tree.setdefault("train", {})
    if not isinstance(train, dict):
        raise ConfigError(f"base.train must be a mapping, got {train!r}")
    if has_baseline:
        train.setdefault("eval_at_start", False)
    train.update(copy.deepcopy(spec.train))
    train["output_dir"] = str(Path(output_dir) / "cells" / spec.name)
    return tree


def _recipe_path(i: int, spec: CellSpec) -> Callable[[str], str]:
    """A cell's run-config key path -> where the compare recipe sets it: the cell's own keys
    (`cells[2].settings.rank`, `cells[2].train.learning_rate`), else `base.<path>`."""
    def rename(path: str) -> str:
        if path in ("method", "method.name"):
            return f"cells[{i}].method"
        if path == "method.settings" or path.startswith("method.settings."):
            return f"cells[{i}].settings" + path[len("method.settings"):]
        if path.startswith("method."):
            return f"cells[{i}]"
        if path.startswith("train.") and path.split(".")[1].split("[")[0] in spec.train:
            return f"cells[{i}].{path}"
        return "base" if path == "<top>" else f"base.{path}"

    return rename


def resolve_cells(config: CompareConfig, source: str = "<compare>", lines: dict[str, int] | None = None) -> list[Cell]:
    """Validate every cell's run configuration; raises one ConfigError listing all problems,
    each once, with the recipe's line (`lines`, from `yaml_lines`) and the key as the recipe
    writes it (`base.train.max_steps`, `cells[2].settings.rank`)."""
    lines = lines or {}
    errors: list[str] = []

    def error(path: str, message: str) -> None:
        errors.append(f"{where(source, lines, path)}: {message}")

    if not config.cells:
        error("cells", "cells is empty; give at least one cell (e.g. {name: baseline, method: none})")
    if config.n_bootstrap < 0:
        error("n_bootstrap", f"n_bootstrap must be >= 0, got {config.n_bootstrap}")
    elif config.n_bootstrap == 0 and any(spec.method in ("none", "full") for spec in config.cells):
        error("n_bootstrap", f"n_bootstrap is 0, but the paired tests against the untuned (none) and full cells need "
                             f"resamples; give n_bootstrap >= 1 (from {MIN_SIGNIFICANT_RESAMPLES} a difference can reach "
                             "p < 0.05; 1000 is usual)")
    if isinstance(config.base.get("train"), dict) and "output_dir" in config.base["train"]:
        error("base.train.output_dir", "base.train.output_dir: compare sets each cell's run folder itself "
                                       "(<output_dir>/cells/<name>); remove it, and set the top-level output_dir to move them all")
    seen: set[str] = set()
    cells = []
    cell_problems: dict[str, list[str]] = {}  # problem -> the cells that have it (a base problem: many)
    validated = 0
    has_baseline = any(spec.method == "none" for spec in config.cells)
    for i, spec in enumerate(config.cells):
        if not _CELL_NAME.match(spec.name or ""):
            error(f"cells[{i}].name", f"cells[{i}].name {spec.name!r} must be non-empty and use only letters, digits, '_', '.', '-'")
            continue
        if spec.name in seen:
            error(f"cells[{i}].name", f"cells[{i}].name {spec.name!r} is used twice; cell names must be unique")
            continue
        seen.add(spec.name)
        if spec.method not in typing.get_args(MethodName):  # reported against the Literal; the rest still checked
            spec = CellSpec(spec.name, "none", {}, spec.train)
        if spec.method == "none" and spec.settings:
            error(f"cells[{i}].settings", f"cells[{i}].settings: method none (the untuned base) takes no settings, got {spec.settings}")
        if "output_dir" in spec.train:
            error(f"cells[{i}].train.output_dir", f"cells[{i}].train.output_dir: compare sets each cell's run folder "
                                                  f"itself ({Path(config.output_dir) / 'cells' / spec.name}); remove it")
        try:
            tree = cell_config_dict(config.base, spec, config.output_dir, has_baseline)
        except ConfigError as err:
            error("base.train", str(err))
            continue
        validated += 1
        run, problems = config_problems(tree, source, lines, RunConfig, _recipe_path(i, spec))
        for problem in problems:
            cell_problems.setdefault(problem, []).append(spec.name)
        if problems:
            continue
        canonical = config_to_dict(run)
        canonical["method"]["name"] = spec.method
        if config.engine != "pytorch":  # another engine's test scores are other results (pytorch: as before engines)
            canonical["test_engine"] = {"engine": config.engine, "compute_type": config.compute_type}
        digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()[:16]
        cells.append(Cell(spec, run, digest))
    for problem, names in cell_problems.items():
        # a base value some cells override is a problem of the others only: name them
        errors.append(problem if len(names) == validated or ": cells[" in problem else f"{problem} (in cell {', '.join(names)})")
    if errors:
        raise ConfigError(f"{len(errors)} problem(s) in {source}:\n  " + "\n  ".join(errors))
    return cells


def load_compare_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[CompareConfig, list[Cell]]:
    """Read and validate a comparison recipe; `key.path=value` overrides apply to the
    compare tree (`output_dir=/tmp/q`, `base.train.max_steps=10`).

    Relative corpus paths in `base` resolve against the recipe's folder.

    Raises:
        ConfigError: every invalid key and value, in the compare settings and in every cell,
            each once, with its line.
        FileNotFoundError: the recipe does not exist.
    """
    path = Path(path)
    data, text = read_yaml_mapping(path, "a compare recipe: a mapping with base, cells and output_dir")
    if isinstance(data.get("base"), dict):
        data["base"] = resolve_corpus_paths(data["base"], path.parent)
    lines = yaml_lines(text)
    for item in overrides:
        key, value = parse_override(item)
        set_path(data, key, value)
        lines[key] = 0  # set on the command line: no line in the recipe
    source = str(path) if not overrides else f"{path} (+ overrides)"
    builder = Builder(source, lines)
    config = builder.build(CompareConfig, data, "")
    try:
        cells = resolve_cells(config, source, lines)
    except ConfigError as err:  # one list: the compare settings' problems and every cell's
        builder.errors += str(err).split("\n  ")[1:]
    if builder.errors:
        raise ConfigError(f"{len(builder.errors)} problem(s) in {source}:\n  " + "\n  ".join(builder.errors))
    return config, cells
