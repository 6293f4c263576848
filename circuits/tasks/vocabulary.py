"""Word lists shared by the task generators and the organism's corpus.

Names, places and objects follow Wang et al. (2022); the greater-than nouns follow
Hanna et al. (2023). Every entry is a single word so that a word-level tokenizer maps
it to one token; for sub-word tokenizers (GPT-2) the task builders filter the lists
down to entries that are a single token after a leading space.
"""

from __future__ import annotations

MALE_NAMES: tuple[str, ...] = (
    "Michael", "Christopher", "Matthew", "Joshua", "Daniel", "David", "James", "Robert",
    "John", "Joseph", "Andrew", "Ryan", "Brandon", "Jason", "Justin", "William",
    "Jonathan", "Brian", "Nicholas", "Anthony", "Eric", "Adam", "Kevin", "Steven",
    "Thomas", "Timothy", "Kyle", "Richard", "Jeffrey", "Jeremy", "Benjamin", "Mark",
    "Aaron", "Charles", "Jacob", "Stephen", "Patrick", "Sean", "Nathan", "Paul",
)

FEMALE_NAMES: tuple[str, ...] = (
    "Jessica", "Ashley", "Jennifer", "Amanda", "Sarah", "Stephanie", "Nicole", "Heather",
    "Elizabeth", "Megan", "Melissa", "Christina", "Rachel", "Laura", "Lauren", "Amber",
    "Danielle", "Kimberly", "Amy", "Michelle", "Rebecca", "Emily", "Kelly", "Samantha",
    "Angela", "Katherine", "Andrea", "Erica", "Mary", "Lisa", "Kristen", "Katie",
    "Shannon", "Vanessa", "Courtney", "Christine", "Alicia", "Allison", "Anna", "Grace",
)

NAMES: tuple[str, ...] = MALE_NAMES + FEMALE_NAMES

PLACES: tuple[str, ...] = (
    "store", "garden", "restaurant", "school", "hospital", "office", "house", "station",
    "park", "beach", "library", "market", "cafe", "museum", "church", "airport",
)

OBJECTS: tuple[str, ...] = (
    "ring", "bone", "basketball", "computer", "necklace", "drink", "snack", "book",
    "letter", "key", "ball", "flower", "cake", "hat", "gift", "pen",
)

# Nouns for "The {noun} lasted from the year ..." (a subset of Hanna et al.'s list).
EVENT_NOUNS: tuple[str, ...] = (
    "war", "reign", "siege", "dynasty", "expedition", "journey", "plague", "treaty",
    "marriage", "rivalry", "campaign", "drought", "trial", "voyage", "project", "study",
    "tour", "riot", "strike", "crisis", "famine", "alliance", "occupation", "conflict",
)
