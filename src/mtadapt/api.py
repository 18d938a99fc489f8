"""The Python API: PEFT's flow over mtadapt's own methods, a thin layer over what the CLI uses.

    import mtadapt

    base = mtadapt.load_model("tiny:mbart50")                        # any model `mtadapt` loads
    model = mtadapt.get_peft_model(base, mtadapt.LoraConfig(rank=8))  # PEFT: get_peft_model
    model.print_trainable_parameters()                               # as `mtadapt params` counts
    model.save_pretrained("adapters/lora")                           # + the base fingerprint
    model = mtadapt.from_pretrained(mtadapt.load_model("tiny:mbart50"), "adapters/lora")
    model.load_adapter("adapters/other", "other"); model.set_adapter("other")
    model.translate(["der hund sieht eine katze"], src_lang="de_DE", tgt_lang="en_XX")
    model.translate("der hund", src_lang="de_DE", tgt_lang="en_XX")  # one sentence: one string
    model.export_peft("peft/")                                       # PeftModel.from_pretrained
    plain = model.merge_and_unload()                                 # a plain transformers model

Every call goes to the module the CLI uses for the same job, so there is one implementation:

| here                         | there                                                  |
|------------------------------|--------------------------------------------------------|
| `load_model`, `wrap_model`   | `models.loading`                                       |
| `get_peft_model`, `add_adapter` | `methods.storage.add_method` (add, then freeze the base) |
| `print_trainable_parameters` | `methods.params.param_report` (what `mtadapt params` prints) |
| `save_pretrained`, `load_adapter`, `from_pretrained` | `methods.storage` (fingerprint-checked) |
| `set_adapter`, `disable_adapters`, `delete_adapter` | `methods.routing.AdapterSet`        |
| `translate`                  | `inference.generation.translate_ids` (batched, sorted)  |
| `merge_and_unload`           | `methods.merge.merged_model`                           |
| `export_peft`                | `methods.peft_interop.export_to_peft`                  |
| `open_run`                   | `runs.open_for_inference` (what `translate --run` opens) |

`AdaptedModel` is not an ``nn.Module``: it holds the `LoadedModel` (``.model`` is the
transformers or Marian-native module, changed in place, as PEFT changes its base) and hands
every other attribute to that module, so ``model(**batch)``, ``model.parameters()``,
``model.train()`` and ``model.generate(...)`` work as on the module itself.

What a caller can get wrong raises an `mtadapt.MtadaptError` (each also a ``ValueError``)
naming what is valid, before anything changes: `ConfigError` for an adapter name, a config,
a language code or a folder that is a file; `AdapterError` for an adapter the model does not
hold (or holds already); `DataError` for a text that is not a string.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, overload

from torch import nn

from mtadapt.errors import AdapterError, ConfigError, DataError
from mtadapt.inference.generation import GenerationConfig, translate_ids
from mtadapt.methods import base, storage
from mtadapt.methods.params import ParamReport, param_report
from mtadapt.methods.registry import config_from_dict
from mtadapt.methods.routing import AdapterSet
from mtadapt.models.languages import PairCodec
from mtadapt.models.loading import LoadedModel, load_model, wrap_model

def _as_loaded(model: LoadedModel | nn.Module | str, tokenizer: Any | None = None) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, str):
        return load_model(model)
    if isinstance(model, nn.Module) and hasattr(model, "config"):
        return wrap_model(model, tokenizer)
    raise ConfigError(f"expected a LoadedModel (mtadapt.load_model), a transformers model or a model name; got {type(model).__name__}")


def _method_config(config: Any, settings: dict[str, Any]) -> Any:
    """A method config object, from one (`LoraConfig(rank=8)`) or from a method name and its
    settings (`"lora"`, rank=8).

    Raises:
        ConfigError: anything else (a dict, say), an unknown method or setting, or settings
            given next to a config object.
    """
    if isinstance(config, str):
        return config_from_dict(config, settings)
    if not (dataclasses.is_dataclass(config) and not isinstance(config, type) and isinstance(getattr(config, "method", None), str)):
        raise ConfigError("config must be a method config (mtadapt.LoraConfig(rank=8), ...) or a method name with its "
                          f"settings as keywords (\"lora\", rank=8); got {type(config).__name__} {config!r:.80}"
                          + (" (a dict {'name': 'lora', ...}: pass its name and settings as keywords)" if isinstance(config, dict) else ""))
    if settings:
        raise ConfigError(f"settings {sorted(settings)} go into the config itself when a config object is given")
    return config


def _check_folder(folder: Path, what: str) -> None:
    """Raise ConfigError when `folder`, or the nearest part of its path that exists, is a file."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"{what}: {existing} is a file, not a folder; give a folder path (it is created if missing)")


class AdaptedModel:
    """A loaded base model with mtadapt adapters: PEFT's ``PeftModel`` calls on our methods.

    Attributes:
        loaded: The base model, its tokenizer and family (`models.loading.LoadedModel`).
        adapters: The `AdapterSet` over the model (activate, disable, route per row).
        src_lang / tgt_lang: Default translation direction (`translate` may override it).
    """

    def __init__(self, loaded: LoadedModel, src_lang: str | None = None, tgt_lang: str | None = None,
                 codec: PairCodec | None = None) -> None:
        self.loaded = loaded
        self.adapters = AdapterSet(loaded.model, loaded.family.targets)
        self.src_lang = src_lang if codec is None else codec.src_lang
        self.tgt_lang = tgt_lang if codec is None else codec.tgt_lang
        self._codec = codec  # a run's codec (multi-pair runs carry a target tag)

    # -- the wrapped module -----------------------------------------------------------
    @property
    def model(self) -> nn.Module:
        return self.loaded.model

    @property
    def tokenizer(self) -> Any:
        return self.loaded.tokenizer

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.loaded.model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "loaded":  # not set yet (copy/pickle): no recursion
            raise AttributeError(name)
        return getattr(self.loaded.model, name)

    def __repr__(self) -> str:
        return (f"AdaptedModel({self.loaded.name_or_path!r}, family={self.loaded.family.name!r}, "
                f"adapters={self.adapters.names}, active={self.active_adapters})")

    # -- methods ----------------------------------------------------------------------
    def add_adapter(self, adapter_name: str, config: Any, **settings: Any) -> None:
        """Add a fresh adapter of `config` (a method config, e.g. `LoraConfig(rank=8)`, or a
        method name with its `settings` as keywords) and freeze the base: every adapter trains,
        nothing else (whole-model methods, `full` and `bitfit`, choose their own trainable
        parameters). The first adapter becomes active; later ones wait for `set_adapter`, as
        in PEFT.

        Raises:
            ConfigError: an invalid name (letters, digits, '_' and '-'), config or setting;
                the model is left as it was.
            AdapterError: the model already holds an adapter of that name.
        """
        config = _method_config(config, settings)
        base.check_adapter_name(adapter_name)
        if adapter_name in self.adapters.names:
            raise AdapterError(f"the model already holds an adapter {adapter_name!r}; delete_adapter({adapter_name!r}) first, "
                               "or pick another name")
        storage.add_method(self.model, config, self.loaded.family.targets, adapter_name=adapter_name, freeze=True)

    def trainable_parameters(self) -> ParamReport:
        """Trainable and total parameters, counted by `param_report` as `mtadapt params` does
        (PEFT's rules: tied weights once, buffers not counted)."""
        return param_report(self.model, None)

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable, total), as PEFT's method of the same name returns them."""
        report = self.trainable_parameters()
        return report.trainable, report.total

    def print_trainable_parameters(self) -> None:
        """Print PEFT's line: ``trainable params: 9,216 || all params: 223,104 || trainable%: 4.1308``."""
        r = self.trainable_parameters()
        print(f"trainable params: {r.trainable:,} || all params: {r.total:,} || trainable%: {r.trainable_percent:.4f}")

    # -- adapters on disk ---------------------------------------------------------------
    def save_pretrained(self, folder: str | os.PathLike, adapter_name: str | None = None) -> Path:
        """Save adapters with the base fingerprint: one adapter into `folder` itself, several
        into `folder/<name>/` each (a run's `best/` layout; `from_pretrained` reads both).

        Args:
            adapter_name: save only this one, into `folder`.
        """
        folder = Path(folder)
        names = [adapter_name] if adapter_name else self.adapters.names
        whole = getattr(self.model, "mtadapt_whole_model_method", None)
        if not names and whole is None:
            raise AdapterError("the model holds no adapter to save; add one with get_peft_model or add_adapter")
        if adapter_name and (whole is None or self.adapters.names):
            self._check_known([adapter_name])
        _check_folder(folder, "save_pretrained")
        if len(names) <= 1:
            return storage.save_adapter(self.model, folder, names[0] if names else "default", base_model=self.loaded.name_or_path)
        for name in names:
            storage.save_adapter(self.model, folder / name, name, base_model=self.loaded.name_or_path)
        return folder

    def load_adapter(self, folder: str | os.PathLike, adapter_name: str | None = None) -> list[str]:
        """Add saved adapter(s) from `folder` (one adapter, or a folder of `<name>/` adapters);
        each base fingerprint is checked first. Returns the names added. Active adapters
        stay as they were, except that the model's first adapter becomes active.

        Raises:
            FingerprintMismatchError: an adapter was saved from another base model.
            AdapterError: `folder` holds no mtadapt adapter (or several, with `adapter_name`).
        """
        from mtadapt.runs import adapter_folders  # the layout of a run's best/ and final/

        folders = adapter_folders(Path(folder))
        if not folders:
            raise AdapterError(f"{folder} holds no mtadapt adapter ({storage.CONFIG_FILE} in it or in its sub-folders)")
        if adapter_name is not None and len(folders) > 1:
            raise AdapterError(f"{folder} holds {len(folders)} adapters; adapter_name names one adapter only")
        return [self.adapters.load(path, adapter_name or name) for name, path in folders]

    @classmethod
    def from_pretrained(cls, model: LoadedModel | nn.Module | str, folder: str | os.PathLike,
                        adapter_name: str | None = None, *, tokenizer: Any | None = None,
                        src_lang: str | None = None, tgt_lang: str | None = None,
                        dtype: str | None = None) -> AdaptedModel:
        """PEFT's ``PeftModel.from_pretrained(base, folder)``: a base (loaded, or a name to
        load) with the adapter(s) saved in `folder`, fingerprint-checked, all active.
        `dtype`: None keeps the model as it is; "auto" places it for generation in the
        device's default precision (`runs.place_for_inference`); or one of float32,
        bfloat16, float16, int8. The fingerprint check compares the weights as stored, so
        an adapter trained in float32 loads whatever precision the base runs in."""
        adapted = cls(_as_loaded(model, tokenizer), src_lang, tgt_lang)
        if dtype is not None:
            from mtadapt.runs import place_for_inference

            place_for_inference(adapted.model, None if dtype == "auto" else dtype)
        names = adapted.load_adapter(folder, adapter_name)
        adapted.set_adapter(*names)
        adapted.model.eval()
        return adapted

    # -- switching ----------------------------------------------------------------------
    @property
    def active_adapters(self) -> list[str]:
        return self.adapters.active

    def _check_known(self, names: Sequence[str]) -> None:
        known = self.adapters.names
        unknown = [n for n in names if n not in known]
        if unknown:
            raise AdapterError(f"unknown adapter(s) {unknown}; the model holds {known}")

    def set_adapter(self, *adapter_names: str) -> None:
        """Use these adapters (summed) on every row; switching is activating another.

        Raises:
            AdapterError: a name the model does not hold (the held ones named).
        """
        self._check_known(adapter_names)
        self.adapters.activate(*adapter_names)

    @contextmanager
    def disable_adapters(self) -> Iterator[None]:
        """``with model.disable_adapters():`` the plain base model, then the previous adapters."""
        previous = self.adapters.active
        self.adapters.disable()
        try:
            yield
        finally:
            self.adapters.activate(*previous)

    def delete_adapter(self, adapter_name: str) -> None:
        self._check_known([adapter_name])
        self.adapters.delete(adapter_name)

    # -- translation ----------------------------------------------------------------------
    def codec(self, src_lang: str | None = None, tgt_lang: str | None = None) -> PairCodec:
        """How sources and targets of one direction are tokenized (language codes, tags)."""
        src, tgt = src_lang or self.src_lang, tgt_lang or self.tgt_lang
        if self._codec is not None and (src, tgt) == (self._codec.src_lang, self._codec.tgt_lang):
            return self._codec
        if self.tokenizer is None:
            raise ConfigError("this model came without a tokenizer: pass tokenizer= to get_peft_model, or load it with mtadapt.load_model")
        return self.loaded.codec(src, tgt)

    @overload
    def translate(self, texts: str, src_lang: str | None = None, tgt_lang: str | None = None, **options: Any) -> str: ...
    @overload
    def translate(self, texts: Sequence[str], src_lang: str | None = None, tgt_lang: str | None = None,
                  **options: Any) -> list[str]: ...

    def translate(
        self,
        texts: str | Sequence[str],
        src_lang: str | None = None,
        tgt_lang: str | None = None,
        *,
        num_beams: int = 1,
        batch_size: int = 32,
        max_length_factor: float = 2.0,
        row_adapters: Sequence[str | None] | None = None,
        progress: bool = False,
    ) -> str | list[str]:
        """Translate sentences with the active adapters (batched, length-sorted); output i
        translates texts[i]. A string is one sentence, and gets one string back.

        Args:
            src_lang / tgt_lang: language codes in the family's spelling (de_DE, de,
                deu_Latn...); default: the model's direction (a run's, or the constructor's).
            row_adapters: one adapter name per sentence (None or "__base__": the base model),
                for a batch that mixes adapters (also under beam search).

        Raises:
            DataError: a text that is not a string (None, a number...).
            ConfigError: a language code the tokenizer does not know (the known ones named).
            AdapterError: a row adapter the model does not hold.
        """
        if isinstance(texts, str):  # one sentence, not one per character
            return self.translate([texts], src_lang, tgt_lang, num_beams=num_beams, batch_size=batch_size,
                                  max_length_factor=max_length_factor, row_adapters=row_adapters, progress=progress)[0]
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise DataError(f"texts[{i}] is {'None' if text is None else type(text).__name__}, not a string: "
                                "translate takes a sentence (str) or a list of them")
        if row_adapters is not None and len(row_adapters) != len(texts):
            raise ConfigError(f"row_adapters has {len(row_adapters)} names for {len(texts)} sentences")
        if row_adapters is not None:
            self._check_known(sorted({n for n in row_adapters if n not in (None, "__base__")}))
        codec = self.codec(src_lang, tgt_lang)
        config = GenerationConfig(num_beams=num_beams, batch_size=batch_size, max_length_factor=max_length_factor)

        def batch_context(chunk: list[int]):
            return base.routing(self.model, [row_adapters[i] for i in chunk])

        outputs = translate_ids(self.model, codec, codec.encode_sources(texts), config, progress=progress,
                                batch_context=batch_context if row_adapters is not None else None)
        return codec.decode([o[0] for o in outputs])

    # -- leaving mtadapt ----------------------------------------------------------------
    def merge_and_unload(self, adapter_names: Sequence[str] | None = None) -> nn.Module:
        """Merge LoRA adapters (default: the active ones) into the weights, in place, and
        return the plain model (`translate` keeps working on it). Only LoRA merges.

        Raises:
            AdapterError: the merge would give NaN/Inf (nothing changed), non-LoRA adapters, or
                a name the model does not hold.
        """
        from mtadapt.methods.merge import merged_model

        if adapter_names is not None:
            self._check_known(adapter_names)
        plain = merged_model(self.model, adapter_names, copy_model=False)
        self.adapters = AdapterSet(plain, self.loaded.family.targets)
        return plain

    def export_peft(self, folder: str | os.PathLike, adapter_name: str | None = None) -> Path:
        """Write one adapter (LoRA or prompt tuning) as a HF PEFT folder:
        ``PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(base), folder)``."""
        from mtadapt.methods.peft_interop import export_to_peft

        if adapter_name is not None:
            self._check_known([adapter_name])
        return export_to_peft(self.model, folder, adapter_name, base_model_name_or_path=self.loaded.name_or_path)


def get_peft_model(
    model: LoadedModel | nn.Module | str,
    config: Any,
    adapter_name: str = "default",
    *,
    tokenizer: Any | None = None,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
    **settings: Any,
) -> AdaptedModel:
    """Add a method to a loaded model, freeze the base, return the `AdaptedModel` (in place:
    the module itself now holds the adapter, as with PEFT).

    Args:
        model: a `LoadedModel` (`mtadapt.load_model`), a transformers seq2seq model (pass
            `tokenizer` to translate with it), or a name to load ("tiny:mbart50").
        config: a method config (`LoraConfig(rank=8)`, `HoulsbyConfig(...)`...), or a method
            name with its `settings` as keywords: ``get_peft_model(base, "lora", rank=8)``.
        src_lang / tgt_lang: the default direction of `translate`.

    Raises:
        ConfigError: an unknown method or setting (the valid ones named), a config that is
            neither a method config nor a method name, an invalid adapter name.
    """
    config = _method_config(config, settings)
    adapted = AdaptedModel(_as_loaded(model, tokenizer), src_lang, tgt_lang)
    adapted.add_adapter(adapter_name, config)
    return adapted


def from_pretrained(model: LoadedModel | nn.Module | str, folder: str | os.PathLike, adapter_name: str | None = None,
                    **kwargs: Any) -> AdaptedModel:
    """`AdaptedModel.from_pretrained`: a base with the saved adapter(s) of `folder`
    (keywords: tokenizer, src_lang, tgt_lang, dtype)."""
    return AdaptedModel.from_pretrained(model, folder, adapter_name, **kwargs)


def open_run(run_dir: str | os.PathLike, which: str = "best", src_lang: str | None = None,
             tgt_lang: str | None = None) -> AdaptedModel:
    """A run folder written by `mtadapt train`: its base, its `best/` (else `final/`)
    adapter(s) and its direction, exactly what ``mtadapt translate --run`` opens."""
    from mtadapt.runs import open_for_inference

    loaded, codec = open_for_inference(run=run_dir, which=which, src_lang=src_lang, tgt_lang=tgt_lang)
    return AdaptedModel(loaded, codec=codec)


__all__ = ["AdaptedModel", "from_pretrained", "get_peft_model", "load_model", "open_run", "wrap_model"]
