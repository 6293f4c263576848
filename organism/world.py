"""The organism's small world: word lists and the fixed facts its sentences state.

Facts (where each person lives, their job, their food) are drawn once from a world seed
and never change for that world, so the corpus teaches consistent knowledge that SAE
features can latch onto, not noise. The first organism lives in ``WORLD_SEED``; a second
organism is given another world seed so that its facts differ.
"""

from __future__ import annotations

import random
from functools import lru_cache

from circuits.tasks.vocabulary import FEMALE_NAMES, NAMES

WORLD_SEED = 1234

CITIES = (
    "Paris",
    "London",
    "Berlin",
    "Rome",
    "Madrid",
    "Vienna",
    "Prague",
    "Dublin",
    "Oslo",
    "Lisbon",
    "Athens",
    "Warsaw",
)
JOBS = (
    "baker",
    "doctor",
    "teacher",
    "farmer",
    "painter",
    "pilot",
    "nurse",
    "lawyer",
    "singer",
    "writer",
    "driver",
    "cook",
)
FOODS = ("apples", "bread", "cheese", "rice", "soup", "fish", "pasta", "cookies", "grapes", "honey", "eggs", "beans")
COLORS = ("red", "blue", "green", "yellow", "black", "white", "brown", "purple")
# Ordered from smallest to largest: comparisons follow this order.
ANIMALS = ("ant", "mouse", "rabbit", "cat", "dog", "sheep", "horse", "cow", "bear", "elephant", "whale")
WEATHER = ("raining", "snowing", "sunny", "windy", "cloudy", "foggy", "cold", "warm")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
)
# Content words for the repeated-phrase (induction) family.
FILLER_WORDS = (
    "moon",
    "river",
    "stone",
    "quiet",
    "lamp",
    "cloud",
    "green",
    "window",
    "silver",
    "tree",
    "music",
    "paper",
    "road",
    "glass",
    "sugar",
    "candle",
    "forest",
    "mirror",
    "engine",
    "garden",
    "thunder",
    "pencil",
    "orange",
    "castle",
    "bridge",
    "winter",
    "shadow",
    "feather",
    "rocket",
    "violin",
)
SHOP_ITEMS = (*FOODS, "milk", "tea", "coffee", "butter", "salt", "lemons")


@lru_cache(maxsize=8)
def facts(world_seed: int = WORLD_SEED) -> dict[str, dict[str, str]]:
    """Each name's fixed city, job and favourite food in the world ``world_seed``."""
    rng = random.Random(world_seed)
    return {name: {"city": rng.choice(CITIES), "job": rng.choice(JOBS), "food": rng.choice(FOODS)} for name in NAMES}


def pronoun(name: str) -> str:
    return "her" if name in FEMALE_NAMES else "his"


def subject_pronoun(name: str) -> str:
    return "She" if name in FEMALE_NAMES else "He"
