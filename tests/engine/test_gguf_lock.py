"""Two processes converting the same GGUF the first time: one converts, the other waits and reuses it
(issue 13, item 7d). The transformers loaders are stubbed: what is tested is the locking around them."""

from __future__ import annotations

import json
import threading

import transformers

from engine.backbone import resolve_model_path


class _Converter:
    """Stub loaders; the first conversion waits (up to a deadline) for a second one to start."""

    def __init__(self):
        self.conversions, self.second_started = 0, threading.Event()
        self.lock = threading.Lock()

    def model(self, *args, **kwargs):
        with self.lock:
            self.conversions += 1
            first = self.conversions == 1
        if first:
            self.second_started.wait(3)  # without a file lock the second conversion starts meanwhile
        else:
            self.second_started.set()
        return _Model()

    def tokenizer(self, *args, **kwargs):
        return _Model()


class _Model:
    def __init__(self):
        self.config = object()

    def save_pretrained(self, path):
        (path / "config.json").write_text(json.dumps({"model_type": "llama"}))


def test_two_first_conversions_of_one_gguf_do_not_race(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    stub = _Converter()
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", stub.model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", stub.tokenizer)
    gguf = tmp_path / "Tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))
    results, errors = [], []

    def convert():
        try:
            results.append(resolve_model_path(gguf, progress=False))
        except Exception as error:  # noqa: BLE001 - the race shows up as any exception in one thread
            errors.append(error)

    threads = [threading.Thread(target=convert) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert stub.conversions == 1
    assert len(results) == 2 and results[0] == results[1] and (results[0] / "config.json").is_file()
    models = tmp_path / "home" / "models"
    assert sorted(p.name for p in models.iterdir() if not p.name.endswith(".lock")) == [results[0].name]
