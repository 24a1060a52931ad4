"""Library messages a user cannot act on are silenced by their exact text, and nothing else is."""

import subprocess
import sys
import textwrap

import pytest

# A fresh process: the filters are process-wide, and the real messages come from real loggers.
SCRIPT = textwrap.dedent("""
    import logging, warnings
    from engine.library_noise import quiet_library_noise
    quiet_library_noise()
    bnb = logging.getLogger("bitsandbytes.backends.cpu.ops")
    bnb.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please pip install kernels", "x")
    bnb.warning("another bitsandbytes warning stays")
    warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6. Use ...", FutureWarning)
    warnings.warn("some other FutureWarning stays", FutureWarning)
""")


def test_known_library_noise_is_silenced_and_nothing_else():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "gemm_4bit_forward" not in result.stderr and "is_gradient_checkpointing" not in result.stderr
    assert "another bitsandbytes warning stays" in result.stderr
    assert "some other FutureWarning stays" in result.stderr


@pytest.mark.slow  # a fresh process importing torch, transformers and peft
def test_the_lora_path_prints_no_future_warning(tmp_path):
    """peft wrapping a model (LoRA) used to print transformers' `is_gradient_checkpointing` FutureWarning."""
    script = textwrap.dedent(f"""
        import warnings
        warnings.simplefilter("default")
        from engine.reward_model import RewardModel, LoraSettings
        from tests.tiny import make_tiny_model_dir
        RewardModel.from_base(make_tiny_model_dir({str(tmp_path / 'base')!r}), lora=LoraSettings(r=2))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "FutureWarning" not in result.stderr, result.stderr
