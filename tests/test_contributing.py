"""CONTRIBUTING.md against the code, by doing what it says.

* "Adding a method": src/ is copied to a temporary folder and every step the page lists is
  applied there to a toy method, `outscale` (a learned scale per output channel of the
  targeted Linear layers, as IA3 scales activations). A list that misses a file the code
  needs, or names one this test does not touch, fails. Then, with the copy first on
  PYTHONPATH, the CLI's own entry point counts its parameters (`mtadapt params --model
  tiny:marian --method outscale`, exact), trains it for two steps on the toy task
  (`mtadapt train recipes/toy.yaml ...`), and the saved adapter loads again with exactly the
  trained outputs; two adapters routed per row give each row its single run's output.
* "Adding a model family": every file it names exists, and every family of
  `models/families.py` is where the list says families go.
* The layer table is the one `tests/test_architecture.py` checks, every benchmark is
  listed, and every `tests/...::test` the page names exists.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

from mtadapt.methods.registry import METHOD_NAMES
from mtadapt.models import families, targets, tiny

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "CONTRIBUTING.md"
TOY = "outscale"
PATH = re.compile(r"`((?:src|tests|docs)/[^`\s:]+)(?:::(\w+))?`")


def _section(title: str) -> str:
    text = PAGE.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"CONTRIBUTING.md has no section '## {title}'"
    return match.group(1)


def _steps(title: str) -> list[str]:
    """The numbered items of a section (each with its continuation lines)."""
    return re.findall(r"^\d+\. (.*?)(?=^\d+\. |^\s*$)", _section(title), re.M | re.S)


def _paths(steps: list[str]) -> set[str]:
    return {m.group(1).replace("<name>", TOY) for step in steps for m in PATH.finditer(step)}


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""


def _check_named_tests_and_headings(steps: list[str]) -> None:
    """`tests/x.py::test_y` names a test that exists; `docs/x.md` with "Title" names a heading."""
    for step in steps:
        for match in PATH.finditer(step):
            path = REPO / match.group(1)
            if "<name>" in match.group(1):
                continue  # a file the contributor writes
            assert path.exists(), f"CONTRIBUTING.md names {match.group(1)}, which does not exist"
            if match.group(2):
                assert f"def {match.group(2)}(" in path.read_text(encoding="utf-8"), match.group(0)
            if path.suffix == ".md":
                for title in re.findall(r'"([^"]+)"', step):
                    assert re.search(rf"^#+ {re.escape(title)}$", path.read_text(encoding="utf-8"), re.M), (path, title)


# ---- the toy method, written as step 1 says --------------------------------------------------

OUTSCALE = '''"""Output scaling: a learned scale per output channel of targeted Linear layers (as IA3,
Liu et al., 2022, scales activations).

For a wrapped ``nn.Linear`` (W (d_out, d_in), b) and an adapter with scale l (d_out,)::

    y = (x @ W^T + b) * l            l starts at ones: a fresh adapter is the identity

Active adapters multiply their scales. Per-example routing, with a = expand_routing(route, N):
y[i] *= l[a[i]] where a[i] != -1; base rows keep y[i].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from mtadapt.methods.base import (AdapterSelection, MethodConfig, active_adapters, adapter_names, expand_routing,
                                  find_modules, replace_module, resolve_target_patterns, set_active_adapters)
from mtadapt.models.targets import ModelTargets


@dataclass
class OutScaleConfig(MethodConfig):
    """targets: "default" (LoRA's), "all-linear", or a list of regexes."""

    method: ClassVar[str] = "outscale"
    routes_per_row: ClassVar[bool] = True  # each row is scaled by its own adapter alone
    targets: str | list[str] = field(default="default")

    def __post_init__(self) -> None:
        if isinstance(self.targets, str) and self.targets not in ("default", "all-linear"):
            raise ValueError(f"outscale targets={self.targets!r} must be 'default', 'all-linear' or a list of regexes")


class OutScaleLinear(AdapterSelection, nn.Module):
    """A frozen ``nn.Linear`` (``base_layer``) and named scales ``scales.<adapter>`` (d_out,)."""

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.scales = nn.ParameterDict()
        self._init_selection()

    def add_adapter(self, adapter_name: str) -> None:
        w = self.base_layer.weight
        self.scales[adapter_name] = nn.Parameter(torch.ones(w.shape[0], dtype=w.dtype, device=w.device))

    def adapter_names(self) -> list[str]:
        return list(self.scales.keys())

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name not in self.scales:
            raise KeyError(f"no outscale adapter {adapter_name!r}; this layer holds {self.adapter_names()}")
        del self.scales[adapter_name]
        self._forget(adapter_name)

    def adapter_parameters(self, adapter_name: str) -> list[nn.Parameter]:
        return [self.scales[adapter_name]]

    def adapter_state_dict(self, adapter_name: str) -> dict[str, torch.Tensor]:
        return {"scale": self.scales[adapter_name].detach()}

    def load_adapter_state_dict(self, adapter_name: str, tensors: dict[str, torch.Tensor]) -> None:
        target = self.scales[adapter_name]
        if set(tensors) != {"scale"} or tensors["scale"].shape != target.shape:
            raise ValueError(f"adapter {adapter_name!r} expects one 'scale' of shape {tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(tensors["scale"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)  # (N, ..., d_out)
        if self._route is None:
            for name in self._active:
                if name in self.scales:
                    y = y * self.scales[name]
            return y
        a = expand_routing(self._route, x.shape[0]).to(x.device)  # (N,), -1 = base
        ones = torch.ones_like(self.base_layer.weight[:, 0])
        table = torch.stack([ones] + [self.scales[n] if n in self.scales else ones for n in self._route_names])
        factor = table[a + 1]  # (N, d_out): row 0 of the table is the base (route -1)
        return y * factor.view(x.shape[0], *([1] * (y.dim() - 2)), -1)


def apply(model: nn.Module, config: OutScaleConfig, targets: ModelTargets, adapter_name: str = "default") -> None:
    """Wrap the targeted Linear layers once, add the adapter to each; the first becomes active."""
    if not isinstance(config, OutScaleConfig):
        raise TypeError(f"outscale.apply needs an OutScaleConfig, got {type(config).__name__}")
    was_active = active_adapters(model) if adapter_names(model) else []
    patterns = resolve_target_patterns(config.targets, targets, "outscale targets")
    found = find_modules(model, patterns, (nn.Linear, OutScaleLinear), "outscale targets")
    wrapped = [n for n, m in found if isinstance(m, OutScaleLinear)]
    for name, module in found:
        if any(name.startswith(w + ".") for w in wrapped):
            continue  # the base_layer inside a wrapper
        if not isinstance(module, OutScaleLinear):
            module = OutScaleLinear(module)
            replace_module(model, name, module)
        module.add_adapter(adapter_name)
    set_active_adapters(model, was_active or [adapter_name])
'''


def _insert_after(path: Path, anchor: str, line: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(anchor) == 1, f"{path}: the anchor {anchor!r} is gone; update this test and CONTRIBUTING.md"
    path.write_text(text.replace(anchor, anchor + line), encoding="utf-8")


def _insert_line_after(path: Path, start: str, line: str) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    at = next((i for i, text in enumerate(lines) if text.startswith(start)), None)
    assert at is not None, f"{path}: no line starts with {start!r}; update this test and CONTRIBUTING.md"
    path.write_text("\n".join(lines[:at + 1] + [line] + lines[at + 1:]), encoding="utf-8")


def _name_in_method_selection(src: Path) -> None:
    """Step 5: the `name:` attribute of MethodSelection lists every method, the new one too."""
    path = src / "mtadapt" / "config.py"
    text = path.read_text(encoding="utf-8")
    match = re.search(r"class MethodSelection:.*?\n        name: ([^\n]*)\.\n", text, re.S)
    assert match, f"{path}: MethodSelection's docstring has no 'name:' line"
    path.write_text(text[:match.start(1)] + match.group(1).replace(" or ", ", ") + f" or {TOY}" + text[match.end(1):],
                    encoding="utf-8")


# path as the page names it -> what the step does in the copy of src/
METHOD_STEPS = {
    f"src/mtadapt/methods/{TOY}.py": lambda src: (src / "mtadapt" / "methods" / f"{TOY}.py").write_text(OUTSCALE),
    "src/mtadapt/methods/registry.py": lambda src: _insert_after(
        src / "mtadapt" / "methods" / "registry.py", "_METHODS: dict[str, tuple[str, str]] = {\n",
        f'    "{TOY}": ("mtadapt.methods.{TOY}", "OutScaleConfig"),\n'),
    "src/mtadapt/methods/__init__.py": lambda src: _insert_line_after(
        src / "mtadapt" / "methods" / "__init__.py", "    registry.py ", f"    {TOY}.py           output scaling (IA3-like)"),
    "src/mtadapt/__init__.py": lambda src: _insert_after(
        src / "mtadapt" / "__init__.py", "_LAZY = {\n", f'    "OutScaleConfig": "mtadapt.methods.{TOY}",\n'),
    "src/mtadapt/config.py": _name_in_method_selection,
}

# Run in a subprocess with the copy first on PYTHONPATH: the CLI's entry point (what the
# `mtadapt` script calls) for `params` and `train`, then the saved adapter against the
# trained state (the run's last checkpoint holds the tensors as training left them).
VERIFY = r'''
import contextlib, io, json, sys
from pathlib import Path
import torch
from safetensors.torch import load_file
import mtadapt
from mtadapt import cli
from mtadapt.config import MethodSelection
from mtadapt.methods import base, storage
from mtadapt.models.loading import load_model

copy, recipe, run = sys.argv[1], sys.argv[2], Path(sys.argv[3])
out = {"mtadapt_file": mtadapt.__file__, "method_doc": MethodSelection.__doc__}
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    out["params_status"] = cli.main(["params", "--model", "tiny:marian", "--method", "outscale"])
row = next(line for line in printed.getvalue().splitlines() if "| outscale " in line)
out["params_trainable"] = int(row.split("|")[4].strip().replace(",", ""))
out["train_status"] = cli.main([
    "train", recipe, "model.name_or_path=tiny:marian", "data.src_lang=null", "data.tgt_lang=null",
    "method.name=outscale", f"train.output_dir={run}", "train.max_steps=2", "train.eval_every=2",
    "train.save_every=2", "train.warmup_steps=0", "train.learning_rate=0.05", "train.eval_at_start=false",
    "data.max_dev_sentences=4", "data.max_tokens=256", "--no-progress"])

g = torch.Generator().manual_seed(0)
x, y = torch.randint(4, 60, (2, 6), generator=g), torch.randint(4, 60, (2, 5), generator=g)
def logits(model):
    with torch.no_grad():
        return model(input_ids=x, decoder_input_ids=y).logits

loaded = load_model("tiny:marian")
model, family_targets = loaded.model.eval(), loaded.family.targets
base_logits = logits(model)
name = storage.load_adapter(model, run / "final", family_targets)
saved = logits(model)
trained = load_file(str(sorted((run / "checkpoints").glob("step-*"))[-1] / "trainable.safetensors"))
reference = load_model("tiny:marian").model.eval()
storage.add_method(reference, mtadapt.OutScaleConfig(), family_targets, name)
params = dict(reference.named_parameters())
out["checkpoint_tensors"] = sorted(trained)
out["trainable_names"] = sorted(n for n, p in params.items() if p.requires_grad)
with torch.no_grad():
    for key, t in trained.items():
        params[key].copy_(t)
out["saved_vs_trained"] = (saved - logits(reference)).abs().max().item()
out["saved_vs_base"] = (saved - base_logits).abs().max().item()

# a second adapter; rows routed to (saved, other) and (base, other) against single runs
storage.add_method(model, mtadapt.OutScaleConfig(), family_targets, "other")
with torch.no_grad():
    for _, layer in base.adapter_layers(model):
        layer.scales["other"].uniform_(0.5, 1.5, generator=g)
singles = {}
for active in (name, "other"):
    base.set_active_adapters(model, [active])
    singles[active] = logits(model)
with base.routing(model, [name, "other"]):
    routed = logits(model)
with base.routing(model, [None, "other"]):
    half = logits(model)
out["routed_vs_single"] = max((routed[0] - singles[name][0]).abs().max().item(),
                              (routed[1] - singles["other"][1]).abs().max().item(),
                              (half[0] - base_logits[0]).abs().max().item(),
                              (half[1] - singles["other"][1]).abs().max().item())
print("VERIFY " + json.dumps(out))
'''


def test_adding_a_method_as_the_page_says(tmp_path):
    steps = _steps("Adding a method")
    named = _paths(steps)
    src_named = {p for p in named if p.startswith("src/")}
    assert src_named == set(METHOD_STEPS), (
        f"the page's src files {sorted(src_named)} differ from those this test changes {sorted(METHOD_STEPS)}")
    _check_named_tests_and_headings(steps)

    copy = tmp_path / "src"
    shutil.copytree(REPO / "src", copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for apply_step in METHOD_STEPS.values():
        apply_step(copy)
    methods_doc = _docstring(copy / "mtadapt" / "methods" / "__init__.py")
    missing = [p.name for p in (copy / "mtadapt" / "methods").glob("*.py") if p.name != "__init__.py" and p.name not in methods_doc]
    assert not missing, f"methods/__init__.py's module map misses {missing}"

    env = dict(os.environ, PYTHONPATH=str(copy), TOKENIZERS_PARALLELISM="false")
    env.setdefault("OMP_NUM_THREADS", "1")
    done = subprocess.run([sys.executable, "-c", VERIFY, str(copy), str(REPO / "recipes" / "toy.yaml"), str(tmp_path / "run")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    marker = next((line for line in done.stdout.splitlines() if line.startswith("VERIFY ")), None)
    assert marker, f"exit {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    out = json.loads(marker[len("VERIFY "):])

    assert out["mtadapt_file"].startswith(str(copy))  # the copy ran, not the repository
    assert out["params_status"] == 0 and out["train_status"] == 0
    name_line = next(line for line in out["method_doc"].splitlines() if line.strip().startswith("name:"))
    assert all(re.search(rf"\b{m}\b", name_line) for m in (*METHOD_NAMES, TOY)), name_line
    # tiny:marian: LoRA's default targets are q_proj and v_proj of each encoder layer's
    # self-attention (2 per layer) and each decoder layer's self- and cross-attention (4),
    # every one d_model -> d_model; one scale per output channel
    layers, d_model = tiny.TINY_DIMS["layers"], tiny.TINY_DIMS["d_model"]
    assert out["params_trainable"] == layers * (2 + 4) * d_model == 768
    assert len(out["checkpoint_tensors"]) == layers * (2 + 4)
    assert out["checkpoint_tensors"] == out["trainable_names"]  # add_method froze all but the scales
    assert out["saved_vs_trained"] == 0.0  # the saved adapter is exactly what training left
    assert out["saved_vs_base"] > 1e-4  # and training moved it off the identity
    assert out["routed_vs_single"] < 1e-5


def test_the_model_family_list_matches_the_code():
    steps = _steps("Adding a model family")
    named = _paths(steps)
    assert {p for p in named if p.startswith("src/")} == {
        "src/mtadapt/models/targets.py", "src/mtadapt/models/families.py", "src/mtadapt/models/languages.py",
        "src/mtadapt/models/tiny.py", "src/mtadapt/inference/ctranslate2.py"}
    _check_named_tests_and_headings(steps)

    names = list(families.FAMILIES)
    assert set(typing.get_args(families.FamilyName)) == set(names)
    table = _docstring(REPO / "src" / "mtadapt" / "models" / "families.py")
    docs_table = _section_of(REPO / "docs" / "guides" / "methods.md", "Language handling")
    declared_targets = [v for v in vars(targets).values() if isinstance(v, targets.ModelTargets)]
    for name, family in families.FAMILIES.items():
        assert re.search(rf"^\| {name}\b", table, re.M), f"families.py's table has no row for {name}"
        assert re.search(rf"^\|[^|\n]*\b{name}\b", docs_table, re.M), f"docs/guides/methods.md has no row for {name}"
        assert any(family.targets is t for t in declared_targets), f"{name}'s targets are not in models/targets.py"
        assert family.native or name in tiny.TOY_LANGUAGES, f"no tiny:{name} builder (TOY_LANGUAGES)"
    assert {f.language_style for f in families.FAMILIES.values()} <= set(typing.get_args(families.LanguageStyle))
    from mtadapt.inference.ctranslate2 import CONVERTIBLE_FAMILIES

    assert set(CONVERTIBLE_FAMILIES) <= set(names)
    family_tests = (REPO / "tests" / "test_families.py").read_text(encoding="utf-8")
    assert "list(TOY_LANGUAGES)" in family_tests
    code_families = ast.literal_eval(re.search(r"^CODE_FAMILIES = (\[.*?\])", family_tests, re.M).group(1))
    assert set(code_families) == {n for n, f in families.FAMILIES.items() if f.language_style == "codes"}


def _section_of(page: Path, title: str) -> str:
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)", page.read_text(encoding="utf-8"), re.M | re.S)
    assert match, f"{page} has no heading {title!r}"
    return match.group(1)


def test_layer_map_benchmarks_and_named_tests_match():
    text = PAGE.read_text(encoding="utf-8")
    layers = _docstring(REPO / "tests" / "test_architecture.py").split("count):\n\n", 1)[1].rstrip()
    assert layers in text, "the layer table differs from tests/test_architecture.py's docstring"
    unlisted = [p.name for p in sorted((REPO / "benchmarks").glob("*.py")) if f"`{p.name}`" not in text]
    assert not unlisted, f"CONTRIBUTING.md does not list the benchmarks {unlisted}"
    for path, test in re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text):
        assert f"def {test}(" in (REPO / path).read_text(encoding="utf-8"), f"{path}::{test}"
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^test:", makefile, re.M) and re.search(r"^test-slow:", makefile, re.M)
