"""Deterministic instruction corpus: sentences, their expected AU spans, and detector examples.

An instruction is one to three *acts* (an AU phrasing, an emotion phrasing or a negative request,
each with an intensity word) put into a sentence frame, with time phrases, e.g.
``"she should grin broadly from 1 to 2.5 seconds and raise her eyebrows at the end"``.

Split by template (the held-out 15 % use phrasings the detector never saw): every phrasing of
each AU set / emotion / negative list, every frame and every non-empty intensity word is given
to train / val / test (70 / 15 / 15 %, at least one of each list to val and test) by a seeded
shuffle, except the canonical ones (``PINNED_WORDS``, the first phrasing of each list), which
stay in train; an instruction of split S is built only from S's material. Times and numbers are shared
(they are parsed by rules, not learned). ``random_split`` re-splits the pooled detector examples
at random, as the paper does, for comparison.

Detector examples are the clauses that the runtime splitter
(:func:`cafetalk_rt.control.instruction_text.split_instruction`) cuts from each instruction, labelled
with their act, so training text is exactly what the detector sees at run time.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from cafetalk_rt.control.au import AU_NAMES
from cafetalk_rt.errors import InputError
from cafetalk_rt.control.instruction_text import EDGE_FRACTION, EDGE_MAX_S, POINT_SPAN_S, split_instruction
from train.instructions.phrases import (AU_PHRASES, EMOTION_PHRASES, FACE_WORDS, FRAMES, INTENSITY_LEVELS,
                                        INTENSITY_WORDS, NEGATIVE_PHRASES, STRONG_CONJUNCTIONS, WEAK_CONJUNCTIONS)

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
DEFAULT_SEED = 3
#: Always in train: the first (canonical) phrasing of each list, the bare frame and these words,
#: so the shipped detector knows the words of the README examples.
PINNED_WORDS = ("slightly", "a little", "very", "broadly", "strongly", "small", "big", "slight")
#: Instructions generated per split (test/val hold fewer phrasings, so fewer are needed).
DEFAULT_SIZES = {"train": 4000, "val": 800, "test": 800}


@dataclass(frozen=True)
class Act:
    """One requested action: ``aus`` (vocabulary names, () for a negative), ``intensity`` in
    [0, 1] (from "at 80 %" when written, else ``word_intensity``), its phrase ``text``, the
    ``phrasing`` template it came from and the intensity its words mean."""
    aus: tuple[str, ...]
    intensity: float
    text: str
    phrasing: str
    word_intensity: float


@dataclass(frozen=True)
class Instruction:
    """A generated instruction: ``text``, the clip ``duration_s``, its ``acts`` and the
    expected ``spans`` ((au, intensity, start_s, end_s), ...) for that duration."""
    text: str
    duration_s: float
    acts: tuple[Act, ...]
    spans: tuple[tuple[str, float, float, float], ...]
    split: str


@dataclass(frozen=True)
class Example:
    """A detector example: clause ``text``, ``labels`` (n_AU,) {0, 1}, ``intensity`` (n_AU,)."""
    text: str
    labels: np.ndarray
    intensity: np.ndarray
    split: str
    phrasing: str


def split_items(items, rng: np.random.Generator, pinned=()) -> dict[str, tuple]:
    """Seeded 70/15/15 partition of a list (≥ 1 item to val and test when it has ≥ 3 items);
    ``pinned`` items always go to train."""
    items = list(items)
    order = [items[i] for i in rng.permutation(len(items))]
    order = [x for x in order if x not in pinned] + [x for x in order if x in pinned]
    n_test = max(1, round(SPLIT_FRACTIONS[2] * len(items))) if len(items) >= 3 else 0
    n_val = max(1, round(SPLIT_FRACTIONS[1] * len(items))) if len(items) >= 3 else 0
    return {"test": tuple(order[:n_test]), "val": tuple(order[n_test:n_test + n_val]),
            "train": tuple(order[n_test + n_val:])}


class Material:
    """The phrasings, frames and intensity words of each split (see module doc)."""

    def __init__(self, seed: int = DEFAULT_SEED):
        rng = np.random.default_rng([seed, 1])
        groups = {aus: p for aus, p in AU_PHRASES.items()}
        groups |= {aus: p for aus, p in EMOTION_PHRASES.values()}
        self.phrases = {aus: split_items(p, rng, pinned=p[:1]) for aus, p in groups.items()}
        self.negatives = split_items(NEGATIVE_PHRASES, rng)
        self.frames = split_items(FRAMES, rng, pinned=FRAMES[:1])
        self.words = {(kind, level): split_items(ws, rng, pinned=PINNED_WORDS) for kind, lv in INTENSITY_WORDS.items()
                      for level, ws in lv.items()}


def _fill(phrasing: str, possessive: str, word: str) -> str:
    text = phrasing.replace("{your}", possessive)
    text = re.sub(r"\{(adv|adj|deg)\}", (" " + word) if word else "", text)
    return re.sub(r"\ba ([aeiou])", r"an \1", text)


def _act(material: Material, split: str, rng, possessive: str, negative_rate: float) -> Act:
    if rng.random() < negative_rate:
        aus, pool = (), material.negatives[split]
    else:
        keys = list(material.phrases)
        aus = keys[rng.integers(len(keys))]
        pool = material.phrases[aus][split]
    phrasing = pool[rng.integers(len(pool))]
    kind = re.search(r"\{(adv|adj|deg)\}", phrasing).group(1)
    level = ("low", "medium", "high")[rng.integers(3)]
    words = material.words[(kind, level)][split]
    word = "" if level == "medium" and rng.random() < 0.5 or not words else words[rng.integers(len(words))]
    value = INTENSITY_LEVELS[level]
    return Act(tuple(aus), value, _fill(phrasing, possessive, word), phrasing, value)


def _num(x: float, rng) -> str:
    words = ("zero one two three four five six seven eight nine ten eleven twelve").split()
    if float(x).is_integer() and x < len(words) and rng.random() < 0.15:
        return words[int(x)]
    return f"{x:g}" if rng.random() < 0.7 or not float(x).is_integer() else f"{x:.1f}"


def time_phrase(d: float, rng) -> tuple[str, float, float]:
    """A random time phrase and the (start_s, end_s) it means for a clip of ``d`` seconds,
    computed from the phrase's intent (not by the runtime parser)."""
    a = round(float(rng.uniform(0, d * 0.7)) * 2) / 2
    b = min(round(float(rng.uniform(a + 0.5, d)) * 2) / 2, np.floor(d * 2) / 2)
    if b <= a:
        a, b = 0.0, np.floor(d * 2) / 2
    n = float(rng.integers(1, max(2, int(d))))
    edge = min(EDGE_FRACTION * d, EDGE_MAX_S)
    sa, sb, sn = _num(a, rng), _num(b, rng), _num(n, rng)
    sec = ("s", "sec", "seconds", "second")[rng.integers(4)] if b != 1 else "s"
    choices = [
        (f"from {sa} to {sb} seconds", a, b), (f"from {sa} s to {sb} s", a, b), (f"between {sa} s and {sb}", a, b),
        (f"between {sa} and {sb} {sec}", a, b), (f"{sa}-{sb} s", a, b), (f"during {sa} to {sb} seconds", a, b),
        (f"from {sa} s on", a, d), (f"after {sa} seconds", a, d), (f"until {sb} s", 0.0, b),
        (f"at {sb} s", max(0.0, b - POINT_SPAN_S / 2), min(d, b + POINT_SPAN_S / 2)),
        (f"for {sn} seconds starting at {sa}", a, a + n) if a + n <= d else (f"from {sa} to {sb} s", a, b),
        (f"for the first {sn} seconds", 0.0, n), (f"for the last {sn} seconds", d - n, d),
        ("for the last second", d - 1.0, d), ("for the first second", 0.0, 1.0),
        ("during the last half second", d - 0.5, d), ("at the start", 0.0, edge), ("at the beginning", 0.0, edge),
        ("at the end", d - edge, d), ("at the very end", d - edge, d),
        ("in the middle", d / 2 - edge / 2, d / 2 + edge / 2),
        ("throughout", 0.0, d), ("the whole time", 0.0, d), ("in the first half", 0.0, d / 2),
        ("in the second half", d / 2, d), ("for the whole clip", 0.0, d), ("", 0.0, d),
    ]
    return choices[rng.integers(len(choices))]


def make_instruction(material: Material, split: str, rng, negative_rate: float = 0.15) -> Instruction:
    """One random instruction of ``split`` with its expected spans (see module doc)."""
    d = round(float(rng.uniform(2.0, 12.0)), 2)
    frame, possessive = material.frames[split][rng.integers(len(material.frames[split]))]
    n_acts = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    acts = [_act(material, split, rng, possessive, negative_rate) for _ in range(n_acts)]
    shared = n_acts == 1 or rng.random() < 0.5
    times = [time_phrase(d, rng) for _ in range(1 if shared else n_acts)]
    if not shared:  # an untimed act would take its neighbour's time (runtime rule): say "throughout"
        times = [t if t[0] else ("throughout", 0.0, d) for t in times]
    parts = []
    for i, act in enumerate(acts):
        text = act.text
        if rng.random() < 0.08 and act.aus:
            pct = int(rng.integers(1, 11)) * 10
            text, acts[i] = f"{text} at {pct} %", Act(act.aus, pct / 100, f"{text} at {pct} %", act.phrasing,
                                                       act.word_intensity)
        if not shared and times[i][0]:
            text = f"{text} {times[i][0]}"
        parts.append(text)
    pool = WEAK_CONJUNCTIONS if shared else WEAK_CONJUNCTIONS + STRONG_CONJUNCTIONS
    joiners = [pool[rng.integers(len(pool))] for _ in range(n_acts - 1)]
    body = parts[0] + "".join(j + p for j, p in zip(joiners, parts[1:]))
    text = frame.replace("{act}", body)
    if shared and times[0][0]:
        text = f"{times[0][0]}, {text}" if rng.random() < 0.3 else f"{text} {times[0][0]}"
    spans = tuple((au, act.intensity, round(t[1], 6), round(t[2], 6))
                  for act, t in zip(acts, times * n_acts if shared else times) for au in act.aus)
    return Instruction(re.sub(r"\s+", " ", text).strip(), d, tuple(acts), spans, split)


def generate(seed: int = DEFAULT_SEED, sizes: dict[str, int] | None = None) -> list[Instruction]:
    """All instructions of all splits, deterministic from ``seed``."""
    material = Material(seed)
    out = []
    for k, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, 2, k])
        out += [make_instruction(material, split, rng) for _ in range((sizes or DEFAULT_SIZES)[split])]
    return out


def negative_sentences(seed: int = DEFAULT_SEED, counts: dict[str, int] | None = None) -> list[tuple[str, str]]:
    """(text, split) pairs with no facial action: speech-corpus sentences
    (:mod:`train.corpus.sentences`, by its own id split, face words filtered out) and gibberish."""
    from train.corpus.sentences import draw_sentence_ids, sentence

    counts = counts or {"train": 600, "val": 120, "test": 120}
    out = []
    for k, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, 3, k])
        texts = [sentence(i) for i in draw_sentence_ids(split, counts[split], rng)]
        out += [(t, split) for t in texts if not any(w in t.lower() for w in FACE_WORDS)]
        for _ in range(counts[split] // 6):
            words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), int(rng.integers(3, 9))))
                     for _ in range(int(rng.integers(1, 4)))]
            out.append((" ".join(words), split))
    return out


def _vector(aus, value: float) -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros(len(AU_NAMES), np.float32)
    for au in aus:
        labels[AU_NAMES.index(au)] = 1.0
    return labels, labels * np.float32(value)


def detector_examples(instructions, extra_negatives=()) -> tuple[list[Example], int]:
    """Clause-level examples (deduplicated by text within each split) and the number of
    instructions whose clauses did not line up with their acts (dropped)."""
    out, seen, dropped = [], set(), 0
    for ins in instructions:
        clauses = split_instruction(ins.text, ins.duration_s)
        if len(clauses) != len(ins.acts):
            dropped += 1
            continue
        for clause, act in zip(clauses, ins.acts):
            if (ins.split, clause.text) not in seen:
                seen.add((ins.split, clause.text))
                out.append(Example(clause.text, *_vector(act.aus, act.word_intensity), ins.split, act.phrasing))
    for text, split in extra_negatives:
        try:
            clauses = split_instruction(text, 10.0)
        except InputError:
            continue  # stray numbers: the runtime would refuse these anyway
        for clause in clauses:
            if (split, clause.text) not in seen:
                seen.add((split, clause.text))
                out.append(Example(clause.text, *_vector((), 0.0), split, "<sentence>"))
    return out, dropped


def random_split(examples: list[Example], seed: int = DEFAULT_SEED) -> list[Example]:
    """The pooled examples re-split 70/15/15 at random (unique texts), as the paper does."""
    unique = list({e.text: e for e in examples}.values())
    order = np.random.default_rng([seed, 4]).permutation(len(unique))
    cut = np.cumsum([int(round(f * len(unique))) for f in SPLIT_FRACTIONS[:2]])
    rank = np.arange(len(unique))
    names = np.where(rank < cut[0], "train", np.where(rank < cut[1], "val", "test"))
    return [Example(unique[i].text, unique[i].labels, unique[i].intensity, str(names[r]), unique[i].phrasing)
            for r, i in enumerate(order)]
