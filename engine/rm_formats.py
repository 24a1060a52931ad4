"""Which kind of reward model a directory holds, and whether its weights fit its config.

Four formats, told apart from `config.json` (no weights are loaded to decide):

- `workbench`: what `rm train` writes: a sequence classifier whose config names a reward token
  (`reward_token_id`); the value head reads the token the encoder appends.
- `hf`: a stock `*ForSequenceClassification` (what TRL's `RewardTrainer` saves, and most public
  reward models). Scored as transformers scores it: the model's own chat template, no token
  appended, the logit at the rightmost token that is not `config.pad_token_id` (the last token
  when the config has no pad id), i.e. the rule of transformers' sequence-classification pooling.
- `openrlhf`: OpenRLHF's reward checkpoints: a decoder saved under its `base_model_prefix` plus a
  value head `config.value_head_prefix` (default `score`; OpenRLHF before 0.5 used `value_head`),
  read at the last token (OpenRLHF pools at the last attention-mask position, and its reward
  dataset ends every conversation in EOS), then `(r - config.mean) / config.std` when
  `config.normalize_reward`.
- `internlm2`: XTuner / InternLM2 reward models (`InternLM2ForRewardModel`, remote code, the reward
  token id in the config). Their code runs only when the caller passes `trust_remote_code=True`.

`inspect_reward_model` also refuses, with one line each: a directory that holds no model, a model
with no scoring head (a bare encoder or causal LM), a multi-objective head without a label index,
and weights whose names or shapes do not match the config (checked on the meta device: cheap).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.errors import EngineError
from engine.model_files import (check_chat_template, check_model_files, load_state_dict, load_tokenizer, one_line,
                                remote_code_message)

FORMATS = ("auto", "workbench", "hf", "openrlhf", "internlm2")
POOLING = {
    "workbench": "reward-token",  # the token the encoder appends
    "hf": "last-non-pad",  # transformers' rule: rightmost token != config.pad_token_id
    "openrlhf": "last-token",  # OpenRLHF: last attention-mask position; conversations end in EOS
    "internlm2": "reward-token",
}
MAX_LABELS = 1024  # outputs of a multi-objective head; real ones have a few dozen
OPENRLHF_HEAD = "score"  # OpenRLHF's default value_head_prefix (>= 0.5)
OPENRLHF_OLD_HEAD = "value_head"  # its default before


@dataclass(frozen=True)
class RewardFormat:
    """How to read scores out of a reward-model directory."""

    format: str
    pooling: str
    num_labels: int = 1
    label_index: int | None = None
    value_head: str | None = None  # openrlhf: the head's name prefix
    normalize: tuple[float, float] | None = None  # openrlhf: (mean, std)
    reward_token_id: int | None = None  # workbench, internlm2
    architecture: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict) -> RewardFormat:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if fields.get("normalize") is not None:
            fields["normalize"] = tuple(fields["normalize"])
        return cls(**fields)


def read_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_dir():
        raise EngineError(f"{path} is not a directory")
    if not (path / "config.json").is_file():
        raise EngineError(f"{path} holds no model (no config.json)")
    check_model_files(path)  # before any file is read: no device, no oversized config
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except ValueError as error:  # UnicodeDecodeError included
        raise EngineError(f"{path / 'config.json'}: not valid JSON ({one_line(error, 200)})") from None
    check_config_shape(path / "config.json", config)
    return config


def check_config_shape(file: Path, config) -> None:
    """The fields format detection reads have the types transformers writes (one line otherwise)."""
    if not isinstance(config, dict):
        raise EngineError(f"{file}: holds a JSON {type(config).__name__}, not an object of settings")
    architectures = config.get("architectures")
    if architectures is not None and not (isinstance(architectures, list)
                                          and all(isinstance(a, str) for a in architectures)):
        raise EngineError(f"{file}: 'architectures' must be a list of class names")
    auto_map = config.get("auto_map")
    if auto_map is not None and not isinstance(auto_map, dict):
        raise EngineError(f"{file}: 'auto_map' must be an object (class kind -> module.Class)")
    for key in ("model_type", "value_head_prefix"):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise EngineError(f"{file}: '{key}' must be a string")
    # transformers builds a label dict of num_labels entries when it reads the config: 2**31 of them
    # took the machine's memory before anything else was checked
    labels = config.get("num_labels")
    if labels is not None and (isinstance(labels, bool) or not isinstance(labels, int) or not 1 <= labels <= MAX_LABELS):
        raise EngineError(f"{file}: num_labels must be an integer from 1 to {MAX_LABELS}, got {repr(labels)[:40]}")
    for key in ("id2label", "label2id"):
        if config.get(key) is not None and not (isinstance(config[key], dict) and len(config[key]) <= MAX_LABELS):
            raise EngineError(f"{file}: '{key}' must be an object of at most {MAX_LABELS} labels")


def detect_format(config: dict) -> str:
    """The format a config describes (see the module docstring); EngineError when it has no scoring head."""
    architectures = config.get("architectures") or []
    auto_map = " ".join(str(v) for v in (config.get("auto_map") or {}).values())
    if "value_head_prefix" in config or "normalize_reward" in config:  # first: OpenRLHF wraps any backbone
        return "openrlhf"
    if any("RewardModel" in a for a in architectures) or "RewardModel" in auto_map:
        if "internlm2" in str(config.get("model_type", "")).lower() or "InternLM2" in auto_map + " ".join(architectures):
            return "internlm2"
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "workbench" if config.get("reward_token_id") is not None else "hf"
    kind = ", ".join(architectures) or config.get("model_type") or "unknown"
    raise EngineError(f"the model ({kind}) has no scoring head: a reward model is a *ForSequenceClassification, "
                      "an OpenRLHF reward checkpoint or an InternLM2 reward model; give --format to override")


def inspect_reward_model(path: str | Path, fmt: str = "auto", label_index: int | None = None,
                         trust_remote_code: bool = False) -> RewardFormat:
    """Detect (or check the given) format, check weights against config, and say how to score it."""
    path = Path(path)
    if fmt not in FORMATS:
        raise EngineError(f"unknown reward-model format {fmt!r}; use one of {', '.join(FORMATS)}")
    config = read_config(path)
    if not weight_files(path):
        raise EngineError(f"{path} holds no model weights (*.safetensors or *.bin)")
    fmt = detect_format(config) if fmt == "auto" else fmt
    if fmt == "internlm2" and not trust_remote_code:
        raise EngineError(f"{path} is an InternLM2 reward model, which runs the directory's own Python code: "
                          "pass --trust-remote-code to allow it")
    expected, spec = _expected_shapes(path, config, fmt, label_index, trust_remote_code)
    check_weights(path, expected)
    check_chat_template(load_tokenizer(path, trust_remote_code), path)  # serve renders it at start: no hang there
    return spec


def weight_files(path: Path) -> list[Path]:
    files = sorted(path.glob("*.safetensors"))
    return files or sorted(p for p in path.glob("*.bin") if p.name != "training_args.bin")


def stored_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in the directory's weight files (safetensors: headers only)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in weight_files(path):
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(file, "pt") as f:
                for key in f.keys():
                    shapes[key] = tuple(f.get_slice(key).get_shape())
        else:
            state = load_state_dict(file, map_location="meta")
            shapes.update({k: tuple(v.shape) for k, v in state.items()})
    return shapes


def check_weights(path: Path, expected: dict[str, tuple[int, ...]]) -> None:
    """Refuse weights that lack a tensor the config needs or hold one of another shape."""
    stored = stored_shapes(path)
    missing = sorted(set(expected) - set(stored))
    if missing:
        raise EngineError(f"the weights in {path} do not match its config: missing {', '.join(missing[:3])}"
                          + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""))
    wrong = [f"{k} is {list(stored[k])}, config says {list(v)}" for k, v in expected.items() if stored[k] != v]
    if wrong:
        raise EngineError(f"the weights in {path} do not match its config: {wrong[0]}"
                          + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""))


def _expected_shapes(path: Path, config: dict, fmt: str, label_index: int | None,
                     trust_remote_code: bool) -> tuple[dict, RewardFormat]:
    from transformers import AutoConfig

    _check_layer_count(path, config)
    arch = (config.get("architectures") or [None])[0]
    trust_remote_code = bool(trust_remote_code)  # transformers prompts on stdin when it is left unset
    try:
        hf_config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as error:  # a config transformers cannot read, whatever it raises for it
        raise EngineError(remote_code_message(path, "config class", error)
                          or f"{path}: transformers cannot read its config ({one_line(error, 200)})") from None
    try:
        return _shapes_on_meta(path, config, hf_config, fmt, label_index, trust_remote_code, arch)
    except EngineError:
        raise
    except Exception as error:  # values transformers accepted but cannot build a model from
        raise EngineError(remote_code_message(path, "model class", error)
                          or f"{path}: transformers cannot build the model its config describes "
                             f"({one_line(error, 200)})") from None


def _shapes_on_meta(path: Path, config: dict, hf_config, fmt: str, label_index: int | None,
                    trust_remote_code: bool, arch: str | None) -> tuple[dict, RewardFormat]:
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    with torch.device("meta"):
        if fmt in ("workbench", "hf"):
            model = AutoModelForSequenceClassification.from_config(hf_config, trust_remote_code=trust_remote_code)
            shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
            num_labels = int(hf_config.num_labels)
            _check_label(num_labels, label_index)
            token = config.get("reward_token_id") if fmt == "workbench" else None
            if fmt == "workbench" and token is None:
                raise EngineError(f"{path} has no reward_token_id in its config: it is not a workbench reward model")
            if token is not None:
                _check_token_id(path, token, hf_config)
            return shapes, RewardFormat(fmt, POOLING[fmt], num_labels, label_index, reward_token_id=token,
                                        architecture=arch)
        if fmt == "openrlhf":
            backbone = AutoModel.from_config(hf_config, trust_remote_code=trust_remote_code)
            prefix = backbone.base_model_prefix
            shapes = {f"{prefix}.{k}": tuple(v.shape) for k, v in backbone.state_dict().items()}
            head = config.get("value_head_prefix")
            if head is None:  # older checkpoints: whichever of the two defaults is there
                head = OPENRLHF_OLD_HEAD if f"{OPENRLHF_OLD_HEAD}.weight" in stored_shapes(path) else OPENRLHF_HEAD
            shapes[f"{head}.weight"] = (1, int(hf_config.hidden_size))
            _check_label(1, label_index)
            normalize = _normalisation(path, config) if config.get("normalize_reward") else None
            return shapes, RewardFormat("openrlhf", POOLING["openrlhf"], 1, label_index, value_head=head,
                                        normalize=normalize, architecture=arch)
        if fmt == "internlm2":
            token = config.get("reward_token_id")
            if token is None:
                raise EngineError(f"{path}: an InternLM2 reward model needs reward_token_id in its config")
            _check_token_id(path, token, hf_config)
            model = AutoModel.from_config(hf_config, trust_remote_code=True)
            shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
            _check_label(1, label_index)
            return shapes, RewardFormat("internlm2", POOLING["internlm2"], 1, label_index,
                                        reward_token_id=int(token), architecture=arch)
    raise EngineError(f"unknown reward-model format {fmt!r}")


def _check_token_id(path: Path, token, hf_config) -> None:
    vocab = getattr(hf_config, "vocab_size", None)
    if isinstance(token, bool) or not isinstance(token, int) or token < 0 or (isinstance(vocab, int) and token >= vocab):
        raise EngineError(f"{path / 'config.json'}: reward_token_id must be a token id (an integer from 0 to the "
                          f"vocabulary size {vocab} - 1), got {repr(token)[:40]}")


_LAYER_KEYS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers")


def _check_layer_count(path: Path, config: dict) -> None:
    """Each layer has at least one tensor: a config claiming more layers than the weights hold tensors
    is wrong, and building it (even on the meta device) would take minutes and gigabytes."""
    tensors = None
    for key in _LAYER_KEYS:
        layers = config.get(key)
        if isinstance(layers, int) and not isinstance(layers, bool) and layers > 64:
            tensors = len(stored_shapes(path)) if tensors is None else tensors
            if layers > tensors:
                raise EngineError(f"the weights in {path} do not match its config: {key}={layers} but the weights "
                                  f"hold only {tensors} tensors")


def _normalisation(path: Path, config: dict) -> tuple[float, float]:
    """OpenRLHF's (mean, std): finite, std a positive normal float (a denormal one divides to inf)."""
    values = []
    for key, default in (("mean", 0.0), ("std", 1.0)):
        raw = config.get(key, default)
        try:
            value = float(raw) if not isinstance(raw, bool) else None
        except (TypeError, ValueError, OverflowError):
            value = None
        if value is None or not math.isfinite(value):
            raise EngineError(f"{path / 'config.json'}: normalize_reward with {key}={repr(raw)[:40]}; {key} must be a finite "
                              "number (fix config.json, or set normalize_reward to false)")
        values.append(value)
    mean, std = values
    if std < sys.float_info.min:  # zero, negative, or denormal
        raise EngineError(f"{path / 'config.json'}: normalize_reward with std={std!r}; std must be a positive number "
                          f"of at least {sys.float_info.min:g} (fix config.json, or set normalize_reward to false)")
    return mean, std


def _check_label(num_labels: int, label_index: int | None) -> None:
    if label_index is None:
        if num_labels > 1:
            raise EngineError(f"the model has a multi-objective head ({num_labels} outputs); choose one with "
                              f"--label-index K (0..{num_labels - 1})")
        return
    if not 0 <= label_index < num_labels:
        raise EngineError(f"--label-index {label_index} is outside the head's outputs (0..{num_labels - 1})")
