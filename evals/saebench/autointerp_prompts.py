"""The prompts of delphi and SAEBench, verbatim.

delphi: eai-delphi 0.1.3 (PyPI; EleutherAI/delphi) ``explainers/default/prompts.py`` (the
default explainer, ``activations=True``, no chain of thought), and
``scorers/classifier/prompts/{detection,fuzz}_prompt.py`` with their three few-shot examples.
SAEBench: sae-bench 0.6.0 (PyPI) ``evals/autointerp/main.py`` ``get_generation_prompts`` (with
``use_demos_in_explanation=True``) and ``get_scoring_prompts``.
"""

# ruff: noqa: E501  (the prompts are quoted verbatim: long lines)
from __future__ import annotations

import random

# delphi explainer

DELPHI_EXPLAINER_SYSTEM = """You are a meticulous AI researcher conducting an important investigation into patterns found in language. Your task is to analyze text and provide an explanation that thoroughly encapsulates possible patterns found in it.
Guidelines:

You will be given a list of text examples on which special words are selected and between delimiters like <<this>>. If a sequence of consecutive tokens all are important, the entire sequence of tokens will be contained between delimiters <<just like this>>. How important each token is for the behavior is listed after each example in parentheses.

- Try to produce a concise final description. Simply describe the text latents that are common in the examples, and what patterns you found.
- If the examples are uninformative, you don't need to mention them. Don't focus on giving examples of important tokens, but try to summarize the patterns found in the examples.
- Do not mention the marker tokens (<< >>) in your explanation.
- Do not make lists of possible explanations. Keep your explanations short and concise.
- The last line of your response must be the formatted explanation, using [EXPLANATION]:


"""

DELPHI_EXPLAINER_EXAMPLE_1 = """
Example 1:  and he was <<over the moon>> to find
Activations: ("over", 5), (" the", 6), (" moon", 9)
Example 2:  we'll be laughing <<till the cows come home>>! Pro
Activations: ("till", 5), (" the", 5), (" cows", 8), (" come", 8), (" home", 8)
Example 3:  thought Scotland was boring, but really there's more <<than meets the eye>>! I'd
Activations: ("than", 5), (" meets", 7), (" the", 6), (" eye", 8)
"""

DELPHI_EXPLAINER_RESPONSE_1 = """
[EXPLANATION]: Common idioms in text conveying positive sentiment.
"""

DELPHI_EXPLAINER_EXAMPLE_2 = """
Example 1:  a river is wide but the ocean is wid<<er>>. The ocean
Activations: ("er", 8)
Example 2:  every year you get tall<<er>>," she
Activations: ("er", 2)
Example 3:  the hole was small<<er>> but deep<<er>> than the
Activations: ("er", 9), ("er", 9)
"""

DELPHI_EXPLAINER_RESPONSE_2 = """
[EXPLANATION]: The token "er" at the end of a comparative adjective describing size.
"""

DELPHI_EXPLAINER_EXAMPLE_3 = """
Example 1:  something happening inside my <<house>>", he
Activations: ("house", 7)
Example 2:  presumably was always contained in <<a box>>", according
Activations: ("a", 5), ("box", 9)
Example 3:  people were coming into the <<smoking area>>".

However he
Activations: ("smoking", 2), ("area", 4)
Example 4:  Patrick: "why are you getting in the << way?>>" Later,
Activations: ("way", 4), ("?", 2)
"""

DELPHI_EXPLAINER_RESPONSE_3 = """
[EXPLANATION]: Nouns representing a distinct objects that contains something, sometimes preciding a quotation mark.
"""


# delphi detection scorer

DELPHI_DETECTION_SYSTEM = """You are an intelligent and meticulous linguistics researcher.

You will be given a certain latent of text, such as "male pronouns" or "text with negative sentiment".

You will then be given several text examples. Your task is to determine which examples possess the latent.

For each example in turn, return 1 if the sentence is correctly labeled or 0 if the tokens are mislabeled. You must return your response in a valid Python list. Do not return anything else besides a Python list.
"""

DELPHI_DETECTION_EXAMPLE_1 = """Latent explanation: Words related to American football positions, specifically the tight end position.

Test examples:

Example 0:<|endoftext|>Getty ImagesĊĊPatriots tight end Rob Gronkowski had his bossâĢĻ
Example 1: names of months used in The Lord of the Rings:ĊĊâĢľâĢ¦the
Example 2: Media Day 2015ĊĊLSU defensive end Isaiah Washington (94) speaks to the
Example 3: shown, is generally not eligible for ads. For example, videos about recent tragedies,
Example 4: line, with the left side âĢĶ namely tackle Byron Bell at tackle and guard Amini
"""

DELPHI_DETECTION_RESPONSE_1 = "[1,0,0,0,1]"

DELPHI_DETECTION_EXAMPLE_2 = """Latent explanation: The word "guys" in the phrase "you guys".

Test examples:

Example 0: enact an individual health insurance mandate?âĢĿ, Pelosi's response was to dismiss both
Example 1: birth control access<|endoftext|> but I assure you women in Kentucky aren't laughing as they struggle
Example 2: du Soleil Fall Protection Program with construction requirements that do not apply to theater settings because
Example 3:Ċ<|endoftext|> distasteful. Amidst the slime lurk bits of Schadenfre
Example 4: the<|endoftext|>ľI want to remind you all that 10 days ago (director Massimil
"""

DELPHI_DETECTION_RESPONSE_2 = "[0,0,0,0,0]"

DELPHI_DETECTION_EXAMPLE_3 = """Latent explanation: "of" before words that start with a capital letter.

Test examples:

Example 0: climate, TomblinâĢĻs Chief of Staff Charlie Lorensen said.Ċ
Example 1: no wonderworking relics, no true Body and Blood of Christ, no true Baptism
Example 2:ĊĊDeborah Sathe, Head of Talent Development and Production at Film London,
Example 3:ĊĊIt has been devised by Director of Public Prosecutions (DPP)
Example 4: and fair investigation not even include the Director of Athletics? Â· Finally, we believe the
"""

DELPHI_DETECTION_RESPONSE_3 = "[1,1,1,1,1]"


# delphi fuzzing scorer

DELPHI_FUZZ_SYSTEM = """You are an intelligent and meticulous linguistics researcher.

You will be given a certain latent of text, such as "male pronouns" or "text with negative sentiment". You will be given a few examples of text that contain this latent. Portions of the sentence which strongly represent this latent are between tokens << and >>.

Some examples might be mislabeled. Your task is to determine if every single token within << and >> is correctly labeled. Consider that all provided examples could be correct, none of the examples could be correct, or a mix. An example is only correct if every marked token is representative of the latent

For each example in turn, return 1 if the sentence is correctly labeled or 0 if the tokens are mislabeled. You must return your response in a valid Python list. Do not return anything else besides a Python list.
"""

DELPHI_FUZZ_EXAMPLE_1 = """Latent explanation: Words related to American football positions, specifically the tight end position.

Test examples:

Example 0:<|endoftext|>Getty ImagesĊĊPatriots<< tight end>> Rob Gronkowski had his bossâĢĻ
Example 1: posted<|endoftext|>You should know this<< about>> offensive line coaches: they are large, demanding<< men>>
Example 2: Media Day 2015ĊĊLSU<< defensive>> end Isaiah Washington (94) speaks<< to the>>
Example 3:<< running backs>>," he said. .. Defensive<< end>> Carroll Phillips is improving and his injury is
Example 4:<< line>>, with the left side âĢĶ namely<< tackle>> Byron Bell at<< tackle>> and<< guard>> Amini
"""

DELPHI_FUZZ_RESPONSE_1 = "[1,0,0,1,1]"

DELPHI_FUZZ_EXAMPLE_2 = """Latent explanation: The word "guys" in the phrase "you guys".

Test examples:

Example 0: if you are<< comfortable>> with it. You<< guys>> support me in many other ways already and
Example 1: birth control access<|endoftext|> but I assure you<< women>> in Kentucky aren't laughing as they struggle
Example 2:âĢĻs gig! I hope you guys<< LOVE>> her, and<< please>> be nice,
Example 3:American, told<< Hannity>> that âĢľyou<< guys>> are playing the race card.âĢĿ
Example 4:<< the>><|endoftext|>ľI want to<< remind>> you all that 10 days ago (director Massimil
"""

DELPHI_FUZZ_RESPONSE_2 = "[0,0,0,0,0]"

DELPHI_FUZZ_EXAMPLE_3 = """Latent explanation: "of" before words that start with a capital letter.

Test examples:

Example 0: climate, TomblinâĢĻs Chief<< of>> Staff Charlie Lorensen said.Ċ
Example 1: no wonderworking relics, no true Body and Blood<< of>> Christ, no true Baptism
Example 2:ĊĊDeborah Sathe, Head<< of>> Talent Development and Production at Film London,
Example 3:ĊĊIt has been devised by Director<< of>> Public Prosecutions (DPP)
Example 4: and fair investigation not even include the Director<< of>> Athletics? Â· Finally, we believe the
"""

DELPHI_FUZZ_RESPONSE_3 = "[1,1,1,1,1]"

DELPHI_SCORER_TEMPLATE = """Latent explanation: {explanation}

Text examples:

{examples}
"""


# SAEBench
SAEBENCH_GENERATION_SYSTEM = """We're studying neurons in a neural network. Each neuron activates on some particular word/words/substring/concept in a short document. The activating words in each document are indicated with << ... >>. We will give you a list of documents on which the neuron activates, in order from most strongly activating to least strongly activating. Look at the parts of the document the neuron activates for and summarize in a single sentence what the neuron is activating on. Try not to be overly specific in your explanation. Note that some neurons will activate only on specific words or substrings, but others will activate on most/all words in a sentence provided that sentence contains some particular concept. Your explanation should cover most or all activating words (for example, don't give an explanation which is specific to a single word if all words in a sentence cause the neuron to activate). Pay attention to things like the capitalization and punctuation of the activating words or concepts, if that seems relevant. Keep the explanation as short and simple as possible, limited to 20 words or less. Omit punctuation and formatting. You should avoid giving long lists of words."""
SAEBENCH_GENERATION_DEMOS = """ Some examples: "This neuron activates on the word 'knows' in rhetorical questions", and "This neuron activates on verbs related to decision-making and preferences", and "This neuron activates on the substring 'Ent' at the start of words", and "This neuron activates on text about government economic policy"."""
SAEBENCH_SCORING_SYSTEM = """We're studying neurons in a neural network. Each neuron activates on some particular word/words/substring/concept in a short document. You will be given a short explanation of what this neuron activates for, and then be shown {n_ex} example sequences in random order. You will have to return a comma-separated list of the examples where you think the neuron should activate at least once, on ANY of the words or substrings in the document. For example, your response might look like "{example_response}". Try not to be overly specific in your interpretation of the explanation. If you think there are no examples where the neuron will activate, you should just respond with "None". You should include nothing else in your response other than comma-separated numbers or the word "None" - this is important."""


def delphi_explainer(examples: str) -> list[dict]:
    """delphi's ``build_prompt(examples, activations=True, cot=False)``."""
    messages = [{"role": "system", "content": DELPHI_EXPLAINER_SYSTEM}]
    for prompt, response in (
        (DELPHI_EXPLAINER_EXAMPLE_1, DELPHI_EXPLAINER_RESPONSE_1),
        (DELPHI_EXPLAINER_EXAMPLE_2, DELPHI_EXPLAINER_RESPONSE_2),
        (DELPHI_EXPLAINER_EXAMPLE_3, DELPHI_EXPLAINER_RESPONSE_3),
    ):
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    return [*messages, {"role": "user", "content": f"\n{examples}\n"}]


def _delphi_scorer(system: str, shots: list[tuple[str, str]], examples: str, explanation: str) -> list[dict]:
    messages = [{"role": "system", "content": system}]
    for prompt, response in shots:
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    body = DELPHI_SCORER_TEMPLATE.format(explanation=explanation, examples=examples)
    return [*messages, {"role": "user", "content": body}]


def delphi_detection(examples: str, explanation: str) -> list[dict]:
    """delphi's detection prompt (``detection_prompt.prompt``)."""
    shots = [
        (DELPHI_DETECTION_EXAMPLE_1, DELPHI_DETECTION_RESPONSE_1),
        (DELPHI_DETECTION_EXAMPLE_2, DELPHI_DETECTION_RESPONSE_2),
        (DELPHI_DETECTION_EXAMPLE_3, DELPHI_DETECTION_RESPONSE_3),
    ]
    return _delphi_scorer(DELPHI_DETECTION_SYSTEM, shots, examples, explanation)


def delphi_fuzzing(examples: str, explanation: str) -> list[dict]:
    """delphi's fuzzing prompt (``fuzz_prompt.prompt``)."""
    shots = [
        (DELPHI_FUZZ_EXAMPLE_1, DELPHI_FUZZ_RESPONSE_1),
        (DELPHI_FUZZ_EXAMPLE_2, DELPHI_FUZZ_RESPONSE_2),
        (DELPHI_FUZZ_EXAMPLE_3, DELPHI_FUZZ_RESPONSE_3),
    ]
    return _delphi_scorer(DELPHI_FUZZ_SYSTEM, shots, examples, explanation)


def delphi_examples(texts: list[str]) -> str:
    """delphi's ``Classifier._build_prompt`` example block: ``Example {i}: {text}`` from 0."""
    return "\n".join(f"Example {i}: {t}" for i, t in enumerate(texts))


def saebench_generation(texts: list[str]) -> list[dict]:
    """SAEBench's ``get_generation_prompts`` (demos on, its default): marked examples, numbered from 1."""
    examples = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(texts))
    return [
        {"role": "system", "content": SAEBENCH_GENERATION_SYSTEM + SAEBENCH_GENERATION_DEMOS},
        {"role": "user", "content": f"The activating documents are given below:\n\n{examples}"},
    ]


def saebench_scoring(explanation: str, texts: list[str], n_correct: int, rng: random.Random) -> list[dict]:
    """SAEBench's ``get_scoring_prompts``: unmarked examples numbered from 1 and a random example answer
    of ``n_correct`` numbers (drawn from ``rng``, seeded per latent, where SAEBench uses the global RNG)."""
    examples = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(texts))
    example_response = ", ".join(str(i) for i in sorted(rng.sample(range(1, 1 + len(texts)), k=n_correct)))
    system = SAEBENCH_SCORING_SYSTEM.format(n_ex=len(texts), example_response=example_response)
    user = f"Here is the explanation: this neuron fires on {explanation}.\n\nHere are the examples:\n\n{examples}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
