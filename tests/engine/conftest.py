"""Shared fixtures for the engine tests: one tiny backbone directory and a few preference pairs."""

from __future__ import annotations

import pytest

from engine.data import PreferencePair
from tests.tiny import make_tiny_model_dir


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def pairs():
    return [
        PreferencePair([{"role": "user", "content": "How do I boil an egg?"}], "Put it in boiling water for 8 minutes.",
                       "Eggs are laid by hens."),
        PreferencePair([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}], "4",
                       "It is 5, trust me on this one."),
        PreferencePair([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                        {"role": "user", "content": "Tell me a joke about cats, a long one please."}],
                       "Why did the cat sit on the computer? To keep an eye on the mouse.", "No."),
    ]
