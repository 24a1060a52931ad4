"""A model directory's files, read so that a hostile or broken one fails in one line, never hangs.

transformers trusts the directory it is given: it reads `tokenizer.json` to its end (a link to
`/dev/zero` never ends), prompts on stdin before running a directory's own code (an EOFError in
a job), unpickles `.bin` files, and renders the chat template in the Jinja sandbox, which stops
unsafe attribute access but not a template that loops 10^10 times. So, before it reads anything:

- `check_model_files(path)`: every file transformers may read is a regular file (not a device, a
  FIFO or a link to one), and every non-weight file is at most `MAX_SIDE_FILE_BYTES`;
- `load_tokenizer(path, trust_remote_code)`: the flag passed explicitly (transformers prompts only
  when it is left unset), and its refusals turned into one `EngineError` line;
- `load_state_dict(file, map_location)`: a `.bin` read with `weights_only=True` (memory-mapped
  when it is a zip archive; legacy non-zip files cannot be), refusing pickled objects;
- `check_chat_template(tokenizer, path)`: the template rendered once, the way scoring and
  `serve` render it, in a forked child killed after `TEMPLATE_TIMEOUT_S` seconds and bounded in
  memory (a hung Jinja render cannot be interrupted from another thread).
"""

from __future__ import annotations

import os
import resource
import select
import signal
import stat
import time
import warnings
import zipfile
from pathlib import Path

from engine.errors import EngineError

MAX_SIDE_FILE_BYTES = 128 << 20  # tokenizers, templates: the largest real tokenizer.json is ~35 MB
MAX_CONFIG_BYTES = 4 << 20  # config.json / generation_config.json: real ones are a few KB
_CONFIG_FILES = {"config.json", "generation_config.json"}
TEMPLATE_TIMEOUT_S = float(os.environ.get("WORKBENCH_TEMPLATE_TIMEOUT_S", "10"))
TEMPLATE_MEMORY_BYTES = 1 << 30  # what the child may allocate on top of what it inherits
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".gguf", ".model"}
_READ_SUFFIXES = {".json", ".jinja", ".txt", ".py", ".model", ".tiktoken", *WEIGHT_SUFFIXES}
# The conversations rendered at registration: what scoring renders (user, assistant) and what
# `serve` renders at start to find the turn markers (system, user, with and without a generation prompt).
_SCORED = [{"role": "user", "content": "Is this template safe?"}, {"role": "assistant", "content": "Yes."}]
_SERVED = [{"role": "system", "content": "\x00SYS\x00"}, {"role": "user", "content": "\x00USR\x00"}]


def one_line(error: BaseException, limit: int = 300) -> str:
    """An exception as one short line (transformers' messages span many lines and colour codes)."""
    text = " ".join(str(error).replace("\x1b[1m", "").replace("\x1b[0m", "").split())
    return f"{type(error).__name__}: {text[:limit]}" if text else type(error).__name__


def check_model_files(path: str | os.PathLike) -> None:
    """Refuse a directory holding a file transformers could read without end (see the module docstring)."""
    path = Path(path)
    for entry in sorted(path.iterdir()):
        if entry.suffix not in _READ_SUFFIXES:
            continue
        try:
            info = entry.stat()  # follows links: what a reader would open
        except OSError:
            continue  # a dangling link: whoever needs it says so when it is missing
        if stat.S_ISDIR(info.st_mode):
            continue
        if not stat.S_ISREG(info.st_mode):
            raise EngineError(f"{entry} is not a regular file (a device, a pipe or a link to one): a model's "
                              "files must be plain files; replace it with the real file")
        limit = MAX_CONFIG_BYTES if entry.name in _CONFIG_FILES else MAX_SIDE_FILE_BYTES
        if entry.suffix not in WEIGHT_SUFFIXES and info.st_size > limit:
            raise EngineError(f"{entry} is {info.st_size:,} bytes, over the {limit:,} a model's config "
                              "or tokenizer file may hold: it is not a model file")


def remote_code_message(path: Path, what: str, error: BaseException) -> str | None:
    """The line for transformers' refusal to run a directory's code without the flag (else None)."""
    if "trust_remote_code" not in str(error):
        return None
    return (f"{path}: its {what} is the directory's own Python code, which runs only with --trust-remote-code "
            "(pass it only for code you trust)")


def load_tokenizer(path: str | os.PathLike, trust_remote_code: bool = False):
    """The directory's tokenizer, its failures in one line; never prompts (the flag is always given)."""
    from transformers import AutoTokenizer

    path = Path(path)
    check_model_files(path)
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=bool(trust_remote_code))
    except Exception as error:  # any failure to read the user's files (the tokenizers library raises bare Exception)
        raise EngineError(remote_code_message(path, "tokenizer", error)
                          or f"{path}: its tokenizer cannot be loaded ({one_line(error)})") from None


def load_state_dict(file: str | os.PathLike, map_location="cpu") -> dict:
    """A `.bin`/`.pt` weight file's tensors, never unpickling objects; mmap only where torch allows it."""
    import pickle

    import torch

    file = Path(file)
    mmap = zipfile.is_zipfile(file)  # legacy (non-zip) torch.save files cannot be memory-mapped
    try:
        state = torch.load(file, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        raise EngineError(f"{file} holds pickled Python objects, not only tensors, and unpickling can run "
                          "arbitrary code: convert it to safetensors where you trust it") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise EngineError(f"{file} is not a readable PyTorch weight file ({one_line(error, 200)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EngineError(f"{file} does not hold a state dict (names to tensors)")
    return state


def check_chat_template(tokenizer, path: str | os.PathLike, timeout_s: float | None = None) -> None:
    """Render the chat template once as scoring and `serve` do, in a child process with a time limit."""
    if not getattr(tokenizer, "chat_template", None):
        return  # scoring refuses a template-less tokenizer itself, in one line
    timeout_s = TEMPLATE_TIMEOUT_S if timeout_s is None else timeout_s
    failure = _render_in_child(tokenizer, timeout_s)
    if failure:
        raise EngineError(f"{path}: its chat template {failure}; fix the template (tokenizer_config.json or "
                          "chat_template.jinja) before registering the model")


def _render_all(tokenizer) -> None:
    tokenizer.apply_chat_template(_SCORED, tokenize=False)
    try:  # a template may refuse a system turn: scoring never sends one that it would not
        for prompted in (False, True):
            tokenizer.apply_chat_template(_SERVED, tokenize=False, add_generation_prompt=prompted)
    except Exception as error:
        from jinja2.exceptions import SecurityError

        if isinstance(error, SecurityError):
            raise


def _render_in_child(tokenizer, timeout_s: float) -> str | None:
    """None when the renders succeed; else what went wrong, as the end of a sentence."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():  # the child only renders Jinja: no lock of another thread is needed
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: render, report one line, exit without running the parent's cleanup
        code = 1
        try:
            os.close(read_end)
            _limit_child_memory()
            try:
                _render_all(tokenizer)
                message = ""
            except MemoryError:
                message = f"needs more than {TEMPLATE_MEMORY_BYTES >> 20} MiB of memory to render a short conversation"
            except Exception as error:
                message = f"fails to render a short conversation ({one_line(error, 200)})"
            os.write(write_end, message.encode("utf-8", "replace")[:2000])
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        return _collect_child(pid, read_end, timeout_s)
    finally:
        os.close(read_end)


def _collect_child(pid: int, read_end: int, timeout_s: float) -> str | None:
    deadline = time.monotonic() + timeout_s
    chunks = []
    while True:
        left = deadline - time.monotonic()
        ready = select.select([read_end], [], [], max(left, 0))[0] if left > 0 else []
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return f"did not finish rendering a short conversation within {timeout_s:g} s"
        chunk = os.read(read_end, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) or (os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0):
        return "crashed the process rendering a short conversation"
    return b"".join(chunks).decode("utf-8", "replace") or None


def _limit_child_memory() -> None:
    try:
        with open("/proc/self/statm") as f:
            inherited = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = inherited + TEMPLATE_MEMORY_BYTES
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (OSError, ValueError):
        pass  # not Linux: the time limit still holds
