"""Reward-model directories of every format, built in-process from tiny random models (nothing downloaded).

- `make_hf_rm`: a stock LlamaForSequenceClassification (num_labels configurable).
- `make_trl_rm`: a TRL `RewardTrainer` run of a few steps on a tiny Llama, saved with `save_model`.
- `make_openrlhf_rm`: the layout OpenRLHF's reward checkpoints have (decoder under `model.`, a
  value head named by `value_head_prefix`, `normalize_reward`/`mean`/`std` in the config), written
  with safetensors.
- `make_internlm2_rm`: a remote-code directory (`auto_map` + a small modeling file) shaped like
  XTuner's InternLM2ForRewardModel: a decoder, a `v_head`, read at the reward token appended last.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from tests.tiny import make_tiny_tokenizer, tiny_llama_config

CONVERSATIONS = [
    ([{"role": "user", "content": "What is 2 + 2?"}], "It is 4."),
    ([{"role": "user", "content": "What is 2 + 2?"}], "Probably five, or maybe not."),
    ([{"role": "user", "content": "What is 2 + 2?"}], "4"),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}], "Blue."),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}], "Red, I think."),
    ([{"role": "user", "content": "Hi"}], ""),
]


def _sharpen(module, seed: int) -> None:
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        module.weight.copy_(torch.randn(module.weight.shape, generator=generator))


def make_hf_rm(path: str | Path, num_labels: int = 1, seed: int = 0, chat_template: str | None = None,
               **config_overrides) -> Path:
    import torch
    from transformers import LlamaForSequenceClassification

    path = Path(path)
    tokenizer = make_tiny_tokenizer(chat_template) if chat_template else make_tiny_tokenizer()
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(tiny_llama_config(len(tokenizer), num_labels=num_labels,
                                                             **config_overrides))
    _sharpen(model.score, seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_trl_rm(path: str | Path, base_dir: str | Path, steps: int = 3) -> Path:
    """Train a reward model with TRL's RewardTrainer for a few steps and save it as TRL does."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    path = Path(path)
    rows = [{"chosen": [{"role": "user", "content": f"What is {i} + {i}?"},
                        {"role": "assistant", "content": f"It is {2 * i}."}],
             "rejected": [{"role": "user", "content": f"What is {i} + {i}?"},
                          {"role": "assistant", "content": "No idea."}]} for i in range(8)]
    args = RewardConfig(output_dir=str(path / "trainer"), max_steps=steps, per_device_train_batch_size=4,
                        learning_rate=1e-2, report_to=[], save_strategy="no", logging_strategy="no",
                        use_cpu=True, bf16=False, dataloader_num_workers=0, disable_tqdm=True)
    trainer = RewardTrainer(model=str(base_dir), args=args, train_dataset=Dataset.from_list(rows),
                            processing_class=AutoTokenizer.from_pretrained(base_dir))
    trainer.train()
    out = path / "model"
    trainer.save_model(str(out))
    return out


def make_openrlhf_rm(path: str | Path, normalize: bool = True, head: str = "score", seed: int = 0,
                     mean: float = 0.7, std: float = 2.5) -> Path:
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaModel

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tiny_tokenizer()
    config = tiny_llama_config(len(tokenizer))
    torch.manual_seed(seed)
    decoder = LlamaModel(config)
    value_head = torch.nn.Linear(config.hidden_size, 1, bias=False)
    _sharpen(value_head, seed)
    state = {f"model.{k}": v.contiguous() for k, v in decoder.state_dict().items()}
    state[f"{head}.weight"] = value_head.weight.detach().clone()
    save_file(state, path / "model.safetensors", metadata={"format": "pt"})
    config_dict = config.to_dict() | {"architectures": ["LlamaForCausalLM"], "value_head_prefix": head,
                                      "normalize_reward": normalize}
    if normalize:
        config_dict |= {"mean": mean, "std": std}
    (path / "config.json").write_text(json.dumps(config_dict, indent=2))
    tokenizer.save_pretrained(path)
    return path


INTERNLM2_MODELING = '''
import torch
from transformers import LlamaConfig, LlamaModel, LlamaPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutputWithPast


class TinyInternLM2Config(LlamaConfig):
    model_type = "tiny_internlm2"


class InternLM2ForRewardModel(LlamaPreTrainedModel):
    config_class = TinyInternLM2Config

    def __init__(self, config):
        super().__init__(config)
        self.model = LlamaModel(config)
        self.v_head = torch.nn.Linear(config.hidden_size, 1, bias=False)
        self.reward_token_id = config.reward_token_id
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        scores = self.v_head(hidden).squeeze(-1)
        ends = attention_mask.cumsum(dim=1).argmax(dim=1).view(-1, 1)  # as XTuner: the last real token
        return SequenceClassifierOutputWithPast(logits=torch.gather(scores, 1, ends))
'''
INTERNLM2_REWARD_TOKEN_ID = 0  # an id the tiny tokenizer has that is not its pad token


def make_internlm2_rm(path: str | Path, seed: int = 0) -> Path:
    import torch

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "modeling_tiny_internlm2.py").write_text(INTERNLM2_MODELING)
    spec = importlib.util.spec_from_file_location("modeling_tiny_internlm2_build", path / "modeling_tiny_internlm2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tokenizer = make_tiny_tokenizer()
    base = tiny_llama_config(len(tokenizer)).to_dict()
    base.pop("model_type", None)
    config = module.TinyInternLM2Config(**base, reward_token_id=INTERNLM2_REWARD_TOKEN_ID)
    torch.manual_seed(seed)
    model = module.InternLM2ForRewardModel(config)
    _sharpen(model.v_head, seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    saved = json.loads((path / "config.json").read_text())
    saved |= {"architectures": ["InternLM2ForRewardModel"], "model_type": "tiny_internlm2",
              "auto_map": {"AutoConfig": "modeling_tiny_internlm2.TinyInternLM2Config",
                           "AutoModel": "modeling_tiny_internlm2.InternLM2ForRewardModel"}}
    (path / "config.json").write_text(json.dumps(saved, indent=2))
    return path
