"""Free-text instructions → AU spans: ``"smile broadly from 2 to 3 seconds"`` →
``[AUSpan("AU12", 1.0, 2.0, 3.0)]``.

Cafe-Talk §3.4 (paper): a frozen text encoder, a small adapter (512 → 128 → 512) and a
multi-label head, trained with BCE plus an InfoNCE alignment on generated text–AU pairs and
emotion–AU pairs. Ours: all-MiniLM-L6-v2 (384-d; see :mod:`cafetalk_rt.control.text_encoder`) in place of
CLIP, the adapter D → 128 → D with a residual connection, one sigmoid per AU of
``cafetalk_rt.control.au.AU_NAMES``, plus an intensity regressor (D → 64 → 1 on the text embedding;
the paper's AU conditions are binary, our spans carry an intensity). Trained by
``python -m train.instructions`` (corpus and held-out accuracy: docs/control.md).

The detector itself is numpy (a few hundred KB of weights in
``assets/instruction_detector.safetensors``, metadata: AU vocabulary, text encoder, decoder
settings, held-out accuracy);
only the text encoder needs torch, imported on first use. Times and explicit intensities are read
by rules (:mod:`cafetalk_rt.control.instruction_text`), never by the detector.
"""
from __future__ import annotations

import json
import logging
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from cafetalk_rt.control.au import AU_NAMES, AUSpan
from cafetalk_rt.errors import InputError
from cafetalk_rt.control.instruction_text import ACCEPTED_TIME_FORMS, Clause, split_instruction
from cafetalk_rt.control.text_encoder import TextEncoder, load_text_encoder

log = logging.getLogger(__name__)

DEFAULT_DETECTOR = Path(__file__).resolve().parents[1] / "assets" / "instruction_detector.safetensors"
EXAMPLES = ('"smile broadly from 2 to 3 seconds"', '"raise your eyebrows at the end"',
            '"look surprised in the middle"', '"frown slightly for the last second"',
            '"close your eyes between 1.5 s and 2, then grin at 80 %"')
_NEGATION = re.compile(r"\b(?:don'?t|do\s+not|never|stop|avoid|no\s+more|no\s+longer)\b")
#: Tensor names of a detector checkpoint (shapes for D = embedding size, H = adapter width,
#: S = candidate AU sets).
WEIGHT_SHAPES = {"adapter.down.weight": ("H", "D"), "adapter.down.bias": ("H",), "adapter.up.weight": ("D", "H"),
                 "adapter.up.bias": ("D",), "head.weight": ("n_AU", "D"), "head.bias": ("n_AU",),
                 "intensity.hidden.weight": (64, "D"), "intensity.hidden.bias": (64,),
                 "intensity.out.weight": (1, 64), "intensity.out.bias": (1,),
                 "sets.labels": ("S", "n_AU"), "sets.embeddings": ("S", "D")}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


class InstructionDetector:
    """Text → AU detector (numpy forward) on a frozen text encoder.

    Decoding: among the candidate AU sets ``sets.labels`` (the sets seen in training, the empty
    set included), pick the one maximising ``cos(f, set embedding) / temperature + lik_weight ·
    log P(set | per-AU sigmoids)`` (the InfoNCE alignment used as a classifier; see
    ``train.instructions.train``).

    Args:
        weights: tensors named as ``WEIGHT_SHAPES`` (float32).
        metadata: at least ``au_names`` (JSON list), ``text_encoder`` (spec, e.g. "minilm"),
            ``embedding_dim``, ``temperature`` and ``lik_weight``.
        text_encoder: an encoder object or spec overriding the checkpoint's (its ``dim`` must
            match); built lazily on the first ``detect``.
    Raises:
        InputError: AU names not in the vocabulary (checked here), or (on first use) an encoder of
            another embedding size.
    """

    def __init__(self, weights: dict[str, np.ndarray], metadata: dict[str, str],
                 text_encoder: TextEncoder | str | None = None):
        self.weights = {k: np.asarray(weights[k], np.float32) for k in WEIGHT_SHAPES}
        self.metadata = dict(metadata)
        self.au_names: tuple[str, ...] = tuple(json.loads(metadata["au_names"]))
        unknown = [a for a in self.au_names if a not in AU_NAMES]
        if unknown:
            raise InputError(f"detector predicts AUs outside the vocabulary: {unknown}; retrain it")
        self.dim = int(metadata["embedding_dim"])
        self.temperature = float(metadata["temperature"])
        self.lik_weight = float(metadata["lik_weight"])
        self.encoder_spec = text_encoder if text_encoder is not None else metadata["text_encoder"]
        self._encoder: TextEncoder | None = None

    @classmethod
    def load(cls, path: str | Path | None = None, *, text_encoder: TextEncoder | str | None = None):
        """Read a detector checkpoint (default: the shipped one).

        Raises:
            FileNotFoundError: no such file.
        """
        from safetensors import safe_open

        path = Path(path) if path else DEFAULT_DETECTOR
        if not path.is_file():
            raise FileNotFoundError(f"instruction detector not found: {path}")
        with safe_open(str(path), "np") as f:
            return cls({k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}, text_encoder)

    @property
    def text_encoder(self) -> TextEncoder:
        """The frozen text encoder (loaded on first use)."""
        if self._encoder is None:
            encoder = load_text_encoder(self.encoder_spec)
            if encoder.dim != self.dim:
                raise InputError(f"text encoder {encoder.name} gives {encoder.dim}-d embeddings but the detector "
                                 f"was trained on {self.dim}-d ({self.metadata['text_encoder']}); train a detector "
                                 f"for it: python -m train.instructions --text-encoder SPEC")
            self._encoder = encoder
        return self._encoder

    def forward(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, D) float32 L2-normalised embeddings → adapted features f (N, D), AU probabilities
        (N, n_AU) and intensities (N, n_AU) in [0, 1], columns in ``au_names`` order."""
        w = self.weights
        e = np.asarray(embeddings, np.float32)                                        # (N, D)
        h = np.maximum(e @ w["adapter.down.weight"].T + w["adapter.down.bias"], 0.0)  # (N, H)
        f = e + h @ w["adapter.up.weight"].T + w["adapter.up.bias"]                   # (N, D)
        probs = _sigmoid(f @ w["head.weight"].T + w["head.bias"])                     # (N, n_AU)
        g = np.maximum(e @ w["intensity.hidden.weight"].T + w["intensity.hidden.bias"], 0.0)  # (N, 64)
        intensity = _sigmoid(g @ w["intensity.out.weight"].T + w["intensity.out.bias"])       # (N, 1)
        intensity = np.broadcast_to(intensity, probs.shape)                                # (N, n_AU)
        return f, probs.astype(np.float32), intensity.astype(np.float32)

    def predict(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, D) embeddings → chosen AU sets (N, n_AU) bool and intensities (N, n_AU) float32."""
        f, probs, intensity = self.forward(embeddings)
        sets = self.weights["sets.labels"]                                            # (S, n_AU)
        z = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        score = z @ self.weights["sets.embeddings"].T / self.temperature               # (N, S)
        if self.lik_weight:
            p = np.clip(probs, 1e-6, 1 - 1e-6)
            score = score + self.lik_weight * (np.log(p) @ sets.T + np.log1p(-p) @ (1 - sets).T)
        return sets[score.argmax(1)] > 0.5, intensity

    def detect(self, texts: list[str]) -> list[dict[str, float]]:
        """For each text, {AU name: intensity in [0, 1]} of the detected AUs (an empty dict: no
        facial action recognised)."""
        if not texts:
            return []
        chosen, intensity = self.predict(self.text_encoder.encode(list(texts)))
        return [{self.au_names[k]: float(np.round(i[k], 3)) for k in np.flatnonzero(c)}
                for c, i in zip(chosen, intensity)]


@lru_cache(maxsize=4)
def default_detector(text_encoder: str | None = None) -> InstructionDetector:
    """The shipped detector (cached per process), optionally with another encoder spec."""
    return InstructionDetector.load(text_encoder=text_encoder)


def _unrecognised(text: str) -> InputError:
    return InputError(f"could not recognise a facial action in {text!r}. Describe the face, e.g. "
                      f"{', '.join(EXAMPLES)}; accepted time forms: {ACCEPTED_TIME_FORMS}")


def _merge(a: Clause, b: Clause, whole: tuple) -> Clause:
    """Glue two pieces of one sentence; keeps the more specific time of the two."""
    times = b.times if b.times != whole else a.times
    intensity = a.intensity if a.intensity is not None else b.intensity
    return Clause(f"{a.text} {b.text}", times, intensity, a.sentence)


def detect_clauses(clauses: list[Clause], detector: InstructionDetector,
                   duration_s: float) -> list[tuple[Clause, dict[str, float]]]:
    """Run the detector on each clause; a clause with no AU is glued to its neighbour in the same
    sentence and detected again ("i want you, from 2 to 3 s, to smile").

    Raises:
        InputError: a sentence in which no facial action is recognised.
    """
    whole = ((0.0, float(duration_s)),)
    clauses = list(clauses)
    found = detector.detect([c.text for c in clauses])
    while True:
        empty = next((i for i, d in enumerate(found) if not d), None)
        if empty is None:
            return list(zip(clauses, found))
        c = clauses[empty]
        nxt = empty + 1 if empty + 1 < len(clauses) and clauses[empty + 1].sentence == c.sentence else None
        prv = empty - 1 if empty > 0 and clauses[empty - 1].sentence == c.sentence else None
        if nxt is None and prv is None:
            raise _unrecognised(c.text)
        i, j = (empty, nxt) if nxt is not None else (prv, empty)
        merged = _merge(clauses[i], clauses[j], whole)
        clauses[i:j + 1] = [merged]
        found[i:j + 1] = detector.detect([merged.text])


def parse_instruction(text: str, duration_s: float, *,
                      detector: InstructionDetector | None = None) -> list[AUSpan]:
    """Turn a free-text instruction into AU spans for a clip of ``duration_s`` seconds.

    Args:
        text: e.g. ``"smile broadly from 2 to 3 seconds and raise your eyebrows at the end"``.
            Clauses are cut at commas, "and", "then", … (rules: :mod:`cafetalk_rt.control.instruction_text`);
            a clause without a time applies to the whole clip.
        duration_s: the audio's length in seconds.
        detector: default the shipped one (MiniLM encoder; loads torch on first use).
    Returns:
        spans in clause order; intensity from "at 80 %" when written, else the detector's.
    Raises:
        InputError: empty or unrecognised text (the message shows examples and the accepted
            time forms), negations ("don't smile"), unreadable numbers, times past the end of
            the audio.
    """
    clauses = split_instruction(text, duration_s)
    if not clauses:
        raise _unrecognised(str(text))
    for clause in clauses:
        if _NEGATION.search(clause.text):
            raise InputError(f"negations are not supported ({clause.text!r}): describe what the face should do, "
                             f"e.g. {', '.join(EXAMPLES[:2])}; leave out what it should not do")
    detector = detector or default_detector()
    spans = []
    for clause, aus in detect_clauses(clauses, detector, duration_s):
        for au, intensity in aus.items():
            value = clause.intensity if clause.intensity is not None else float(np.clip(intensity, 0.0, 1.0))
            spans += [AUSpan(au, value, start, end) for start, end in clause.times]
    log.debug("instruction %r → %s", text, spans)
    return spans


def format_spans(spans) -> str:
    """Spans in the ``--au`` syntax: ``"AU12=1.00@2.00-3.00,AU1=0.60@3.00-4.00"``."""
    return ",".join(f"{s.au}={s.intensity:.2f}@{s.start_s:.2f}-{s.end_s:.2f}" for s in spans)


def instruction_to_spans(instruction: str | None, duration_s: float, *,
                         detector: InstructionDetector | None = None) -> tuple[AUSpan, ...]:
    """``parse_instruction`` for the pipeline: None → (); else a tuple of spans (a blank
    string is an error, as in ``parse_instruction``)."""
    if instruction is None:
        return ()
    return tuple(parse_instruction(instruction, duration_s, detector=detector))
