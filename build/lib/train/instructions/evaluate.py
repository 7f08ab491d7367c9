"""Held-out evaluation of the text → AU detector: clause level and whole instructions.

Clause level: exact-set accuracy (the predicted AU set equals the true one, no-AU texts included)
and per-AU F1 (``train.instructions.train.metrics``). Instruction level: ``parse_instruction`` on
held-out sentences against the spans the generator meant: a sentence counts as right when the
set of (AU, start_s, end_s) matches (times to 0.02 s); intensities are checked separately.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cafetalk_rt.errors import InputError
from cafetalk_rt.control.instructions import InstructionDetector, parse_instruction


class CachedEncoder:
    """Wraps a text encoder with a cache (text → embedding), optionally kept in an .npz file;
    same ``name``/``dim``/``encode`` as the encoder."""

    def __init__(self, encoder, cache_file: str | Path | None = None):
        self.encoder, self.name, self.dim = encoder, encoder.name, encoder.dim
        self.cache: dict[str, np.ndarray] = {}
        self.cache_file = Path(cache_file) if cache_file else None
        if self.cache_file is not None and self.cache_file.is_file():
            with np.load(self.cache_file) as z:
                if str(z["name"]) == self.name:
                    self.cache.update(zip(json.loads(str(z["texts"])), z["vectors"]))

    def encode(self, texts: list[str]) -> np.ndarray:
        """(N,) → (N, D) float32, encoding only texts not seen before (in one batch)."""
        new = sorted({t for t in texts if t not in self.cache})
        if new:
            self.cache.update(zip(new, self.encoder.encode(new)))
            self.save()
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def save(self) -> None:
        """Write the cache file (atomic), if there is one."""
        if self.cache_file is None:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_name(self.cache_file.name + ".tmp.npz")
        texts = list(self.cache)
        np.savez(tmp, name=self.name, texts=json.dumps(texts), vectors=np.stack([self.cache[t] for t in texts]))
        tmp.replace(self.cache_file)


def _key(spans, tol: float = 0.02) -> set:
    return {(au, int(round(s / tol)), int(round(e / tol))) for au, _, s, e in spans}


def evaluate_instructions(detector: InstructionDetector, instructions) -> dict:
    """Instruction-level accuracy of ``parse_instruction`` on generated instructions.

    Returns:
        {"n", "span_set_accuracy", "intensity_within_0.2", "refused"}: the fraction of
        instructions with exactly the expected (AU, start, end) set; among matched spans, the
        fraction whose intensity is within 0.2 of the expected; instructions refused (InputError;
        right when the instruction asks for nothing the vocabulary has).
    """
    right, errors, close, total = 0, 0, 0, 0
    for ins in instructions:
        try:
            got = [(s.au, s.intensity, s.start_s, s.end_s) for s in parse_instruction(ins.text, ins.duration_s,
                                                                                       detector=detector)]
        except InputError:
            errors += 1
            got = []
        if _key(got) == _key(ins.spans):
            right += 1
            want = {(au, round(s, 1), round(e, 1)): i for au, i, s, e in ins.spans}
            for au, i, s, e in got:
                w = want.get((au, round(s, 1), round(e, 1)))
                if w is not None:
                    total += 1
                    close += abs(i - w) <= 0.2
    n = max(len(instructions), 1)
    return {"n": len(instructions), "span_set_accuracy": round(right / n, 4),
            "intensity_within_0.2": round(close / max(total, 1), 4), "refused": errors}
