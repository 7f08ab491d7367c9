"""Deterministic English sentence source for the generated corpus.

Sentence ``sid`` (an integer in ``[0, NUM_SENTENCES)``) is produced by a small template grammar
filled from Faker's English data lists (its part-of-speech word lists — ~1100 nouns, ~490 verbs,
~390 adjectives, ~150 adverbs — plus first names and US states). Words are chosen with
``numpy.random.default_rng([TEXT_SEED, sid])``, so a sentence depends only on its id (and the
installed Faker version's word lists; the manifest stores the text, so a corpus stays
self-describing). No network data is used. The vocabulary covers every English phoneme
(``tests/test_corpus.py`` checks the espeak phone inventory of the first few hundred ids).

Split rule (held-out sentences are never trained on)::

    bucket = zlib.crc32(f"cafetalk-sentence:{sid}".encode()) % 100
    split  = "train" if bucket < 90 else "val" if bucket < 95 else "test"

so about 90 / 5 / 5 % of the ids, independent of the seed used to generate clips.
"""
from __future__ import annotations

import zlib
from functools import lru_cache

import numpy as np

NUM_SENTENCES = 200_000
TEXT_SEED = 20_240_601
SPLITS = ("train", "val", "test")
#: Cumulative bucket limits (percent) of the id-hash split rule above.
_SPLIT_LIMITS = (90, 95, 100)

# Slots: {n} noun, {n2} second noun, {a} adjective, {v} verb (base form), {r} adverb,
# {name}, {name2} first names, {place} US state, {num} small number, {day} weekday.
TEMPLATES: tuple[str, ...] = (
    "The {a} {n} is over there.",
    "{name} wants to {v} the {n} before {day}.",
    "Did you {v} the {a} {n} yesterday?",
    "We should {r} {v} the {n} together.",
    "I think the {n} looks {a} today.",
    "Please {v} my {n} and the {n2}.",
    "{name} and {name2} drove all the way to {place}.",
    "Why would anyone {v} a {a} {n}?",
    "There were {num} {a} things near the {n}.",
    "My {n} is more {a} than your {n2}.",
    "Let's {v} the {n} on {day} morning.",
    "Nobody knew why the {n} was so {a}.",
    "Could {name} {v} this {n} for me?",
    "Oh, that {n} is really {a}!",
    "After the {n}, we had to {v} the {a} {n2}.",
    "{name} said the {n} in {place} was {a}.",
    "You can {r} {v} it with a {n}.",
    "How much does a {a} {n} cost?",
    "Every {n} needs a {a} {n2}.",
    "I never wanted to {v} the {n}, {name}.",
    "Wow, look at the {a} {n} by the {n2}!",
    "The {n} and the {n2} are both {a}.",
    "On {day}, {name} will {v} the {n}.",
    "Is the {n} {a} or just {a2}?",
    "We found {num} {n} boxes in {place}.",
    "Maybe we could {v} the {n} later.",
    "What a {a} {n} that was!",
    "She asked me to {r} {v} the {a} {n}.",
    "Bring the {a} {n} back to {name}.",
    "It was a {a} {n}, but the {n2} was {a2}.",
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
            "twelve", "fifteen", "twenty", "thirty", "forty", "a hundred", "a thousand")


#: Determiner-like "adjectives" in Faker's list that make templates ungrammatical.
_NOT_ADJECTIVES = {"another", "every", "several", "various", "many", "much", "such", "own", "same", "other",
                   "each", "few", "little", "less", "least", "more", "most", "next", "last", "only", "used"}


def _clean(words) -> tuple[str, ...]:
    return tuple(sorted({w for w in words if w.isalpha() and w.islower() and len(w) > 1}))


@lru_cache(maxsize=1)
def _lexicon() -> dict[str, tuple[str, ...]]:
    """Word lists by slot, sorted (so the choice by index is stable)."""
    from faker.providers.address.en_US import Provider as Address
    from faker.providers.lorem.en_US import Provider as Lorem
    from faker.providers.person.en_US import Provider as Person

    pos = Lorem.parts_of_speech
    names = sorted({*Person.first_names_male, *Person.first_names_female})
    return {
        "n": _clean(pos["noun"]), "v": _clean(pos["verb"]), "a": _clean(w for w in pos["adjective"] if w not in _NOT_ADJECTIVES),
        "r": _clean(w for w in pos["adverb"] if w not in ("not", "however")),
        "name": tuple(n for n in names if n.isalpha()), "place": tuple(sorted(Address.states)),
        "day": _DAYS, "num": _NUMBERS,
    }


def _article_fix(text: str) -> str:
    """Turn ``a`` into ``an`` before a vowel letter (good enough for TTS prosody)."""
    words = text.split(" ")
    for i in range(len(words) - 1):
        if words[i] in ("a", "A") and words[i + 1][:1].lower() in "aeiou":
            words[i] += "n"
    return " ".join(words)


def sentence(sid: int) -> str:
    """The English sentence with id ``sid`` (deterministic; see the module docstring).

    Raises:
        ValueError: ``sid`` outside ``[0, NUM_SENTENCES)``.
    """
    if not 0 <= int(sid) < NUM_SENTENCES:
        raise ValueError(f"sentence id must be in [0, {NUM_SENTENCES}), got {sid!r}")
    rng = np.random.default_rng([TEXT_SEED, int(sid)])
    lex = _lexicon()
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    fill = {slot: words[int(rng.integers(len(words)))] for slot, words in lex.items()}
    fill["n2"] = lex["n"][int(rng.integers(len(lex["n"])))]
    fill["a2"] = lex["a"][int(rng.integers(len(lex["a"])))]
    fill["name2"] = lex["name"][int(rng.integers(len(lex["name"])))]
    text = _article_fix(template.format(**fill))
    return text[0].upper() + text[1:]


def split_of(sid: int) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for sentence ``sid`` by the id-hash rule."""
    bucket = zlib.crc32(f"cafetalk-sentence:{int(sid)}".encode()) % 100
    return next(s for s, lim in zip(SPLITS, _SPLIT_LIMITS) if bucket < lim)


def draw_sentence_ids(split: str, count: int, rng: np.random.Generator) -> list[int]:
    """``count`` distinct random sentence ids belonging to ``split`` (rejection sampling).

    Raises:
        ValueError: unknown split.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    out: list[int] = []
    while len(out) < count:
        sid = int(rng.integers(NUM_SENTENCES))
        if split_of(sid) == split and sid not in out:
            out.append(sid)
    return out
