"""The two kinds of judge: a local causal LM read from its logits, and an OpenAI-compatible endpoint.

Both answer the same two questions for `workbench.judges.pairwise` and `workbench.judges.rubric`:

    judge.judge_pairs(template, items)   -> [(first, second)]: P(reply a better) with a shown first / second
    judge.rate(template, items, scale)   -> [Verdict]: the rating of each reply

A local judge's verdict is a probability read from the next-token logits (`engine.judging`), so it
is never unparseable. A remote judge's answer is parsed strictly: after stripping white space it
must be exactly one of the labels ("A"/"B", or a whole number on the scale); anything else is kept
as its raw text with no verdict, never guessed. Each judge names its identity (what its verdicts
depend on: the weights' content hash, or the endpoint and model name) and its settings, which
`workbench.judges.labeler` hashes into the labeler's id.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.judges.templates import PAIRWISE, JudgeTemplate, as_conversation, prompt_text

PAIR_LABELS = ("A", "B")
MIN_TEXT_BUDGET = 48  # tokens left for the texts after the template: below this a verdict means little


@dataclass(frozen=True)
class PairItem:
    """Two replies to one prompt, as the judge sees them (a is the one with the smaller id)."""

    prompt: list[dict]
    text_a: str
    text_b: str


@dataclass(frozen=True)
class RatingItem:
    prompt: list[dict]
    text: str


@dataclass(frozen=True)
class Verdict:
    """One answer: the value read (P(a better), or a rating), None when a remote answer was unparseable."""

    value: float | None
    answer: str | None = None  # a remote judge's raw text; None for a local judge


def rubric_labels(scale: int) -> list[str]:
    if scale not in (5, 10):
        raise WorkbenchError(f"--scale {scale}: a rubric runs from 1 to 5 or from 1 to 10")
    return [str(i) for i in range(1, scale + 1)]


class LocalJudge:
    """A causal LM on this machine (HF directory, smollm2, a registered policy's weights)."""

    def __init__(self, spec: str, path: Path, max_length: int = 512, batch_size: int = 8):
        if max_length < MIN_TEXT_BUDGET * 2 or batch_size < 1:
            raise WorkbenchError(f"--max-length must be at least {MIN_TEXT_BUDGET * 2} and --batch-size at least 1")
        self.spec, self.path, self.max_length, self.batch_size = spec, Path(path), max_length, batch_size
        self._model = None

    def identity(self) -> tuple[str, dict]:
        """(what the verdicts depend on, what the labeler records): the weights' content hash."""
        from engine.backbone import model_fingerprint

        fingerprint = model_fingerprint(self.path)
        return fingerprint, {"kind": "local", "model": self.spec, "path": str(self.path), "fingerprint": fingerprint}

    @property
    def chunk_pairs(self) -> int:
        """Pairs judged and committed together: one engine batch (both orders of each pair)."""
        return max(1, self.batch_size // 2)

    @property
    def chunk_replies(self) -> int:
        return self.batch_size

    def settings(self, labels: list[str]) -> dict:
        return {"read": "logits", "labels": labels, "max_length": self.max_length, "precision": "fp32"}

    def short_name(self) -> str:
        return Path(self.spec).name if self.spec != "smollm2" else "smollm2"

    @property
    def model(self):
        if self._model is None:  # loaded once there is work
            from engine.judging import LogitJudge

            self._model = LogitJudge.load(self.path)
        return self._model

    def judge_pairs(self, template: JudgeTemplate, items: list[PairItem], progress=None) -> list[tuple[Verdict, Verdict]]:
        conversations = []
        for item in items:
            prompt, (a, b) = self._fit(template, prompt_text(item.prompt), [item.text_a, item.text_b])
            conversations.append(as_conversation(template.fill(prompt=prompt, response_a=a, response_b=b)))
            conversations.append(as_conversation(template.fill(prompt=prompt, response_a=b, response_b=a)))
        probabilities = self.model.answer_probabilities(conversations, PAIR_LABELS, self.batch_size, progress)
        # order A/B: a is "A"; order B/A: a is "B"
        return [(Verdict(probabilities[2 * i][0]), Verdict(probabilities[2 * i + 1][1])) for i in range(len(items))]

    def rate(self, template: JudgeTemplate, items: list[RatingItem], scale: int, progress=None) -> list[Verdict]:
        labels = rubric_labels(scale)
        conversations = []
        for item in items:
            prompt, (reply,) = self._fit(template, prompt_text(item.prompt), [item.text], scale)
            conversations.append(as_conversation(template.fill(prompt=prompt, response=reply, scale=str(scale))))
        probabilities = self.model.answer_probabilities(conversations, labels, self.batch_size, progress)
        return [Verdict(sum((k + 1) * p for k, p in enumerate(row))) for row in probabilities]  # expected rating

    def check(self, template: JudgeTemplate, labels: list[str], scale: int = 5) -> None:
        """Refuse, before anything is stored, a judge that cannot read the answers as tokens or whose
        template leaves no room for the texts within --max-length."""
        self.model.label_tokens(labels)
        self._room(template, scale)

    def _room(self, template: JudgeTemplate, scale: int) -> int:
        """Tokens left for the texts once the template and the chat template are in."""
        empty = {"prompt": "", "response": "", "response_a": "", "response_b": "", "scale": str(scale)}
        budget = self.max_length - len(self.model.encode(as_conversation(template.fill(**empty))))
        if budget < MIN_TEXT_BUDGET:
            raise WorkbenchError(f"--max-length {self.max_length}: the template alone takes "
                                 f"{self.max_length - budget} of the judge's tokens; raise --max-length")
        return budget

    def _fit(self, template: JudgeTemplate, prompt: str, replies: list[str], scale: int = 5) -> tuple[str, list[str]]:
        """The prompt (its end kept) and replies (their starts kept) cut so that the judge's input stays
        within about `max_length` tokens: the prompt gets at most a third of the room, the replies share
        the rest evenly (a short reply leaves its unused share to the other), the same whichever order."""
        judge, budget = self.model, self._room(template, scale)
        prompt = judge.clip(prompt, budget // 3, keep="end")
        rest = budget - judge.count_tokens(prompt)
        lengths = [judge.count_tokens(r) for r in replies]
        if sum(lengths) <= rest:
            return prompt, replies
        if len(replies) == 1:
            return prompt, [judge.clip(replies[0], rest)]
        short = min(lengths)
        shares = [rest - short if n > short else n for n in lengths] if short <= rest // 2 else [rest // 2] * 2
        return prompt, [judge.clip(r, share) for r, share in zip(replies, shares)]


class RemoteJudge:
    """A chat model behind an OpenAI-compatible endpoint (`workbench.endpoints.chat`), greedy decoding."""

    def __init__(self, served, max_new_tokens: int = 8):
        self.served, self.max_new_tokens = served, max_new_tokens

    def resolve_model(self) -> None:
        """Ask the server for its model when none was named (it must list exactly one)."""
        import asyncio

        from workbench.endpoints.sampling import only_listed_model, served_model_ids

        self.served.check()
        if not self.served.model:
            listed = asyncio.run(served_model_ids(self.served, self.served.api_key()))
            self.served.model = only_listed_model(listed, self.served.urls[0])

    def check(self, template: JudgeTemplate, labels: list[str], scale: int = 5) -> None:
        """Nothing to check before asking: the server's answers are parsed as they come."""

    def identity(self) -> tuple[str, dict]:
        urls = sorted(u.rstrip("/") for u in self.served.urls)
        record = {"kind": "endpoint", "api": self.served.api, "model": self.served.model, "urls": urls}
        return "\n".join([self.served.model, *urls]), record

    @property
    def chunk_pairs(self) -> int:
        """Pairs judged and committed together: as many requests as go out at once."""
        return max(1, self.served.concurrency // 2)

    @property
    def chunk_replies(self) -> int:
        return self.served.concurrency

    def settings(self, labels: list[str]) -> dict:
        return {"read": "strict parse", "labels": labels, **asdict(self._params())}

    def short_name(self) -> str:
        return str(self.served.model).rstrip("/").split("/")[-1]

    def _params(self):
        from engine.data import SamplingParams

        return SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=self.max_new_tokens, seed=0)

    def _answers(self, conversations: list[list[dict]], progress=None) -> list[str]:
        from workbench.endpoints.chat import chat_replies

        replies = chat_replies(self.served.urls, self.served.model, conversations, self._params(), api="chat",
                               api_key=self.served.api_key(), policy=self.served.retry,
                               concurrency=self.served.concurrency)
        if progress is not None:
            progress(len(conversations))
        return [reply.text for reply in replies]

    def judge_pairs(self, template: JudgeTemplate, items: list[PairItem], progress=None) -> list[tuple[Verdict, Verdict]]:
        conversations = []
        for item in items:
            prompt = prompt_text(item.prompt)
            conversations.append(as_conversation(template.fill(prompt=prompt, response_a=item.text_a,
                                                               response_b=item.text_b)))
            conversations.append(as_conversation(template.fill(prompt=prompt, response_a=item.text_b,
                                                               response_b=item.text_a)))
        answers = self._answers(conversations, progress)
        return [(_pair_verdict(answers[2 * i], "A"), _pair_verdict(answers[2 * i + 1], "B"))
                for i in range(len(items))]

    def rate(self, template: JudgeTemplate, items: list[RatingItem], scale: int, progress=None) -> list[Verdict]:
        labels = rubric_labels(scale)
        answers = self._answers([as_conversation(template.fill(prompt=prompt_text(i.prompt), response=i.text,
                                                               scale=str(scale))) for i in items], progress)
        return [Verdict(float(a.strip()) if a.strip() in labels else None, a) for a in answers]


def _pair_verdict(answer: str, label_of_a: str) -> Verdict:
    """P(a better) from a strictly parsed answer: 1 or 0, or None (unparseable) for anything but A or B."""
    said = answer.strip()
    if said not in PAIR_LABELS:
        return Verdict(None, answer)
    return Verdict(1.0 if said == label_of_a else 0.0, answer)


def labels_for(mode: str, scale: int) -> list[str]:
    return list(PAIR_LABELS) if mode == PAIRWISE else rubric_labels(scale)


def make_judge(store, spec: str | None, served, *, max_length: int = 512, batch_size: int = 8):
    """The judge a command names: `spec` (an HF directory, smollm2, a .gguf file or a registered policy),
    or the endpoint `served` (a `workbench.endpoints.sampling.ServedModel`); exactly one of them."""
    if (spec is None) == (served is None):
        raise WorkbenchError("name the judge: a local model with --judge MODEL, or a server with --endpoint URL")
    if served is not None:
        judge = RemoteJudge(served)
        judge.resolve_model()
        return judge
    from engine.backbone import resolve_model_path
    from workbench.dpo.policies import policy_path

    return LocalJudge(spec, resolve_model_path(policy_path(store, spec)), max_length, batch_size)
