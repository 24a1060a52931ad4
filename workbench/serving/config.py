"""The reward server's settings: one dataclass, from which `workbench serve` makes its options."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from engine.precision import PRECISIONS
from workbench.errors import WorkbenchError
from workbench.runtime.loopback import is_loopback


@dataclass
class ServeConfig:
    host: str = field(default="127.0.0.1", metadata={
        "help": "Address to listen on. Anything but loopback needs --api-key-env."})
    port: int = field(default=8000, metadata={"help": "Port (0: any free port; the status file names it)."})
    api_key_env: str | None = field(default=None, metadata={
        "help": "Environment variable holding the API key; every request must then send "
                "'Authorization: Bearer KEY'."})
    log_to_store: bool = field(default=False, metadata={
        "help": "Write every scored (prompt, reply, reward) to the store as a 'rollout' run."})
    max_batch_tokens: int = field(default=8192, metadata={
        "help": "Token budget of one scoring batch (and of one packed forward pass); at least --max-length."})
    max_wait_ms: float = field(default=10.0, metadata={
        "help": "How long the first request of a batch waits for others to join it."})
    max_request_bytes: int = field(default=16 * 1024 * 1024, metadata={
        "help": "Largest request body accepted; larger ones get 413."})
    max_query_bytes: int = field(default=1024 * 1024, metadata={
        "help": "Largest query (one full text, or one conversation's roles and contents plus 16 bytes a "
                "message) in UTF-8 bytes; a request holding a larger one gets 413 before any work."})
    max_queries_per_request: int = field(default=4096, metadata={
        "help": "Most queries (or conversations) in one request; more get 413."})
    max_queue: int = field(default=1024, metadata={
        "help": "Requests that may wait to be scored; when full, new ones get 503."})
    max_batch_requests: int = field(default=256, metadata={
        "help": "Most requests scored together (1 scores every request alone)."})
    max_length: int = field(default=2048, metadata={
        "help": "Tokens per conversation; longer ones keep their end (reported in extra_logs)."})
    precision: str = field(default="auto", metadata={"help": "fp32, bf16 or auto (as `workbench score`).",
                                                     "choices": PRECISIONS})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "Let a reward model that ships its own Python code (InternLM2) run it. Only with this flag."})

    def validate(self, api_key: str | None) -> None:
        """Refuse settings that are unsafe or cannot work, with how to fix them."""
        if not is_loopback(self.host) and not api_key:
            raise WorkbenchError(f"refusing to listen on {self.host} without an API key: set one in an environment "
                                 "variable and pass --api-key-env VAR (or keep the default 127.0.0.1)")
        if self.max_batch_tokens < self.max_length:
            raise WorkbenchError(f"--max-batch-tokens ({self.max_batch_tokens}) must be at least --max-length "
                                 f"({self.max_length})")
        for name in ("max_request_bytes", "max_query_bytes", "max_queries_per_request", "max_queue",
                     "max_batch_requests"):
            if getattr(self, name) < 1:
                raise WorkbenchError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_wait_ms < 0:
            raise WorkbenchError("--max-wait-ms must be >= 0")

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
