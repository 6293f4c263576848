"""Autointerp's pluggable explainer and scorer: an LLM behind an OpenAI-compatible endpoint, or the
offline statistical baseline (``evals.saebench.autointerp_baseline``).

An explainer turns a latent's activating windows into an explanation, in each protocol's
way: delphi's (tokens with a > 0.3·max of their example marked ``<< >>``, runs merged,
and an ``Activations:`` line of ("token" : ceil(10·a / latent max)) pairs, at most 11) and
SAEBench's (tokens with a > ``act_threshold_frac`` · the top windows' max marked one by
one, strongest window first). A scorer judges windows against an explanation: delphi's
detection (plain text; does it activate?), delphi's fuzzing (marked text; is every marked
token right?), both ``examples_per_prompt`` windows a prompt, and SAEBench's selection
(which of the shuffled windows activate?). A judge that gets no usable answer raises
``JudgeError``; the eval records it and goes on.
"""

from __future__ import annotations

import math
import random

from evals.saebench import autointerp_baseline as baseline
from evals.saebench import autointerp_prompts as prompts
from evals.saebench.autointerp_contexts import Window, highlight
from evals.saebench.autointerp_llm import ChatClient, LLMError
from evals.saebench.autointerp_scoring import (
    parse_delphi_predictions,
    parse_explanation_delphi,
    parse_explanation_saebench,
    parse_saebench_predictions,
)

DELPHI_THRESHOLD = 0.3  # delphi's explainer/fuzzing highlight threshold (fraction of the example's max)
DELPHI_MAX_TOKENS = 2000  # delphi leaves max_tokens to the client; a bound so a runaway reply ends
SAEBENCH_EXPLANATION_TOKENS = 30  # SAEBench max_tokens_in_explanation
SAEBENCH_PREDICTION_TOKENS = 33  # SAEBench max_tokens_in_prediction


class JudgeError(Exception):
    """An explainer or scorer that gave no usable answer (one line)."""


def delphi_marks(w: Window, strict: bool = True) -> list[bool]:
    """delphi's highlight: a > 0.3·max(example) in the explainer (``strict``), a ≥ 0.3·max in fuzzing."""
    cut = DELPHI_THRESHOLD * w.max_act
    return [a > cut if strict else a >= cut for a in w.acts]


def saebench_marks(w: Window, act_threshold: float) -> list[bool]:
    return [a > act_threshold for a in w.acts]


def delphi_explainer_text(windows: list[Window], max_activation: float) -> str:
    """The examples block of delphi's default explainer (``activations=True``)."""
    lines = []
    for w in windows:
        marks = delphi_marks(w)
        lines.append(highlight(w.tokens, marks))
        pairs = []
        for tok, a, m in zip(w.tokens, w.acts, marks, strict=True):
            if m:
                if len(pairs) > 10:  # delphi: "we only show the first 10 activations" (its check admits 11)
                    break
                level = min(max(math.ceil(a * 10 / max(max_activation, 1e-6)), 0), 10)
                pairs.append(f'("{tok}" : {level}), ')
        lines.append("Activations: " + "".join(pairs))
    return "\n".join(lines)


def saebench_text(w: Window, marks: list[bool] | None = None) -> str:
    """SAEBench's ``Example.to_str``: marked tokens wrapped one by one; newlines shown as ↵."""
    marks = marks or [False] * len(w.tokens)
    return highlight(w.tokens, marks, merge=False).replace("\ufffd", "").replace("\n", "↵")


class StatisticalExplainer:
    name = baseline.NAME

    def __init__(self, cfg):
        self.cfg = cfg

    def explain_delphi(self, windows: list[Window], max_activation: float, quiet: list[Window]) -> str:
        return baseline.explain([(w.tokens, delphi_marks(w)) for w in windows], [w.tokens for w in quiet], self.cfg)

    def explain_saebench(self, windows: list[Window], act_threshold: float, quiet: list[Window]) -> str:
        marked = [(w.tokens, saebench_marks(w, act_threshold)) for w in windows]
        return baseline.explain(marked, [w.tokens for w in quiet], self.cfg)


class RuleScorer:
    name = baseline.NAME

    def detect(self, explanation: str, windows: list[Window]) -> list[bool]:
        return baseline.detect(explanation, [w.tokens for w in windows])

    def fuzz(self, explanation: str, items: list[tuple[Window, list[bool]]]) -> list[bool]:
        return baseline.fuzz(explanation, [(w.tokens, marks) for w, marks in items])

    def select(self, explanation: str, windows: list[Window], n_correct: int, rng: random.Random) -> list[int]:
        hits = baseline.detect(explanation, [w.tokens for w in windows])
        return [i for i, h in enumerate(hits, start=1) if h]


class LLMExplainer:
    def __init__(self, client: ChatClient):
        self.client = client
        self.name = client.name

    def _ask(self, messages, max_tokens: int) -> str:
        try:
            return self.client.complete(messages, max_tokens)
        except LLMError as err:
            raise JudgeError(str(err)) from err

    def explain_delphi(self, windows: list[Window], max_activation: float, quiet: list[Window]) -> str:
        reply = self._ask(prompts.delphi_explainer(delphi_explainer_text(windows, max_activation)), DELPHI_MAX_TOKENS)
        explanation = parse_explanation_delphi(reply)
        if explanation is None:
            raise JudgeError(f"malformed reply: no [EXPLANATION]: in {reply[:60]!r}")
        return explanation

    def explain_saebench(self, windows: list[Window], act_threshold: float, quiet: list[Window]) -> str:
        texts = [saebench_text(w, saebench_marks(w, act_threshold)) for w in windows]
        reply = self._ask(prompts.saebench_generation(texts), SAEBENCH_EXPLANATION_TOKENS)
        return parse_explanation_saebench(reply)


class LLMScorer(LLMExplainer):
    def _classify(self, messages, n: int) -> list[bool]:
        reply = self._ask(messages, DELPHI_MAX_TOKENS)
        try:
            return parse_delphi_predictions(reply, n)
        except ValueError as err:
            raise JudgeError(f"malformed reply: {err}") from err

    def detect(self, explanation: str, windows: list[Window]) -> list[bool]:
        examples = prompts.delphi_examples([w.text() for w in windows])
        return self._classify(prompts.delphi_detection(examples, explanation), len(windows))

    def fuzz(self, explanation: str, items: list[tuple[Window, list[bool]]]) -> list[bool]:
        examples = prompts.delphi_examples([highlight(w.tokens, marks) for w, marks in items])
        return self._classify(prompts.delphi_fuzzing(examples, explanation), len(items))

    def select(self, explanation: str, windows: list[Window], n_correct: int, rng: random.Random) -> list[int]:
        messages = prompts.saebench_scoring(explanation, [saebench_text(w) for w in windows], n_correct, rng)
        reply = self._ask(messages, SAEBENCH_PREDICTION_TOKENS)
        picked = parse_saebench_predictions(reply)
        if picked is None:
            raise JudgeError(f"malformed reply: not comma-separated numbers or None: {reply[:60]!r}")
        return picked
