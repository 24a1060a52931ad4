"""Inference servers the user already runs, as the workbench's policy, reward model or judge.

    replicas.py   ReplicaPool: retries with backoff + jitter, per-request timeout, dead replicas taken out
    chat.py       ChatClient / chat_replies: OpenAI-compatible chat and completions (policies, judges)
    sampling.py   `sample --endpoint`: N replies per prompt into the store, resumable, keyed per sample
    scoring.py    `score --endpoint`: remote reward models (workbench, OpenRLHF, vLLM) as labelers

Nothing here imports torch or transformers at module level.
"""
