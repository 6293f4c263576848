"""The offline autointerp judge, named ``statistical-baseline`` in every output.

It runs delphi's and SAEBench's protocols end to end without a language model, so the
eval has a floor any LLM judge should beat, and a test can run the whole pipeline.

**Explainer.** Candidates are single tokens (stripped of their leading space) and the
word categories of the organism's world (``organism.world``: city, job, food, colour,
animal, day, month, number word; a person's name, a woman's name, a man's name). Each is
scored on contexts (windows), as the scorers judge them: a = activating windows (of A)
where it is among the marked tokens, b = non-activating training windows (of B) where it
occurs at all; smoothed log-odds log((a+½)/(A−a+½)) − log((b+½)/(B−b+½)). Candidates
with log-odds > ``min_log_odds`` and a ≥ 2 are added greedily, best first, while the
window-level balanced accuracy of the union (marked in an activating window, present
in a non-activating one) rises, up to ``max_terms``. The explanation is plain text (quoted tokens and
fixed category phrases; tokens quoted as JSON strings), e.g. ``the tokens "in" or a word that is a city``, so an LLM
scorer can read it too.

**Scorer.** Reads the explanation's text back (quoted tokens; the category phrases, so
an LLM's explanation that names them is scored as well) into a token set S. Detection:
"activates" iff the window contains a token of S. Fuzzing: "correctly marked" iff every
marked token is in S. SAEBench: the windows containing a token of S.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache

NAME = "statistical-baseline"

PHRASES = {
    "city": "a city",
    "job": "a job",
    "food": "a food",
    "color": "a colour",
    "animal": "an animal",
    "day": "a day of the week",
    "month": "a month",
    "number": "a number word",
    "female_name": "a woman's name",
    "male_name": "a man's name",
    "name": "a person's name",
}


@lru_cache(maxsize=1)
def categories() -> dict[str, frozenset[str]]:
    """Category → its words (organism.world and the name lists)."""
    from circuits.tasks.vocabulary import FEMALE_NAMES, MALE_NAMES
    from evals.saebench.concepts import world_categories

    out = {k: frozenset(v) for k, v in world_categories().items()}
    out["female_name"] = frozenset(FEMALE_NAMES)
    out["male_name"] = frozenset(MALE_NAMES)
    out["name"] = frozenset(FEMALE_NAMES) | frozenset(MALE_NAMES)
    return out


def _norm(token: str) -> str:
    return token.strip()


def log_odds(a: int, A: int, b: int, B: int) -> float:
    """Smoothed log-odds ratio of a candidate at marked (a of A) vs unmarked (b of B) positions."""
    return math.log((a + 0.5) / (A - a + 0.5)) - math.log((b + 0.5) / (B - b + 0.5))


def _balanced(covered: set[str], marked: list[set[str]], quiet: list[set[str]]) -> float:
    """Window-level balanced accuracy of "activates iff a token of ``covered`` is there" (marked tokens of an
    activating window, any token of a non-activating one)."""
    tpr = sum(bool(m & covered) for m in marked) / len(marked)
    tnr = sum(not (q & covered) for q in quiet) / len(quiet) if quiet else 1.0
    return (tpr + tnr) / 2


def explain(marked_windows: list[tuple[list[str], list[bool]]], quiet_windows: list[list[str]], cfg) -> str:
    """An explanation from activating windows (tokens, marked flags) and non-activating windows' tokens."""
    marked = [{_norm(t) for t, f in zip(toks, flags, strict=True) if f} for toks, flags in marked_windows]
    marked = [m for m in marked if m]
    quiet = [{_norm(t) for t in toks} for toks in quiet_windows]
    if not marked:
        return describe([], [])
    candidates: list[tuple[float, str, frozenset[str]]] = []
    A, B = len(marked), len(quiet)

    def add(label: str, words: frozenset[str]) -> None:
        a = sum(bool(m & words) for m in marked)
        if a >= 2:
            b = sum(bool(q & words) for q in quiet)
            candidates.append((log_odds(a, A, b, B), label, words))

    for tok in sorted(set().union(*marked)):
        add(f"token:{tok}", frozenset([tok]))
    for cat, words in categories().items():
        add(f"category:{cat}", words)
    candidates.sort(key=lambda c: (-c[0], c[1]))
    chosen: list[str] = []
    covered: set[str] = set()
    best = _balanced(covered, marked, quiet)
    for score, label, words in candidates:
        if len(chosen) == cfg.max_terms or score <= cfg.min_log_odds:
            break
        if words <= covered:
            continue
        trial = _balanced(covered | words, marked, quiet)
        if trial > best:
            chosen.append(label)
            covered |= words
            best = trial
    tokens = [c.split(":", 1)[1] for c in chosen if c.startswith("token:")]
    cats_chosen = [c.split(":", 1)[1] for c in chosen if c.startswith("category:")]
    return describe(tokens, cats_chosen)


def describe(tokens: list[str], cats: list[str]) -> str:
    parts = []
    if tokens:
        parts.append(("the token " if len(tokens) == 1 else "the tokens ") + ", ".join(json.dumps(t) for t in tokens))
    if cats:
        parts.append("a word that is " + " or ".join(PHRASES[c] for c in cats))
    return " or ".join(parts) if parts else "nothing recognisable (no token or word category separates its contexts)"


def read(explanation: str) -> frozenset[str]:
    """The token set an explanation names: its quoted tokens and the words of the category phrases it uses."""
    quoted = r'"(?:[^"\\]|\\.)+"'  # JSON strings, as ``describe`` writes them (a '"' token is "\"")
    words = set()
    for q in re.findall(quoted, explanation):
        try:
            words.add(json.loads(q))
        except ValueError:
            words.add(q[1:-1])
    text = re.sub(quoted, " ", explanation).lower()
    cats = categories()
    for cat, phrase in sorted(PHRASES.items(), key=lambda kv: -len(kv[1])):
        if phrase.lower() in text:
            words |= cats[cat]
            text = text.replace(phrase.lower(), " ")
    return frozenset(words)


def detect(explanation: str, windows: list[list[str]]) -> list[bool]:
    s = read(explanation)
    return [any(_norm(t) in s for t in toks) for toks in windows]


def fuzz(explanation: str, windows: list[tuple[list[str], list[bool]]]) -> list[bool]:
    s = read(explanation)
    out = []
    for toks, flags in windows:
        shown = [_norm(t) for t, f in zip(toks, flags, strict=True) if f]
        out.append(bool(shown) and all(t in s for t in shown))
    return out
