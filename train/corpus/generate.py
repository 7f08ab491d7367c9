"""Generate a TTS training corpus in parallel: text → speech with phone timing → face curves.

Clip ``k`` of seed ``s`` (id ``tts-s<s>-<k:06d>``) is a pure function of ``(s, k, fps)``:

* voice: with probability ``TEST_VOICE_SHARE`` a held-out test voice, else Piper with
  probability ``piper_share``, else Kokoro with probability ``kokoro_share``, else a training
  espeak voice (uniform). Test voices are every ``en-gb-scotland`` voice and every ``+f4`` /
  ``+m6`` variant, and (when ``kokoro_share`` > 0, for that share of the test clips) the Kokoro
  hold-outs ``tts_kokoro.TEST_VOICES``: never used for train / val. A Kokoro voice is a blend of
  two voices (weight U(0.2, 0.5)) in 30 % of its clips. With ``kokoro_share`` = 0 (the default)
  the plan is the one earlier corpora were made with.
* split: test-voice clips are ``test``; the others are ``val`` with probability 0.05, ``test``
  with 0.04, else ``train``. Sentences are drawn only from the clip's split
  (``train.corpus.sentences.split_of``), so val / test sentences are never trained on.
* emotion × intensity: the 24 combinations in a seeded random order in every block of 24 clips.
* audio: leading / trailing digital silence of U(0.05, 0.4) / U(0.1, 0.5) s around the speech,
  so every clip starts and ends with the mouth at rest.
* labels: phrase ends trimmed to where the voice stops (``train.corpus.pauses``) before the face
  is drawn; the entry records ``face_seed`` and ``labels`` (see ``train.corpus.relabel``).
* text: 1–4 sentences, added until the estimated length reaches a target drawn in
  [``min_clip_s``, ``max_clip_s``] (a clip over ``max_clip_s`` + 1.5 s drops its last sentence).

Clips are written in batches (at most 32, independent of the worker count) until the corpus
holds ``hours`` of this seed's speech, so the same arguments always give the same clips.
Existing clips are skipped (resumable and idempotent) and other manifest entries are kept:
nothing is ever deleted or overwritten.
"""
from __future__ import annotations

import logging
import math
import multiprocessing as mp
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cafetalk_rt.control.emotions import EMOTIONS, INTENSITIES
from cafetalk_rt.frames import check_fps
from train.corpus import format as fmt
from train.corpus.sentences import draw_sentence_ids, sentence

log = logging.getLogger(__name__)

TEST_ACCENTS = ("en-gb-scotland",)
TEST_VARIANTS = ("f4", "m6")
TEST_VOICE_SHARE = 0.04
_COMBOS = [(e, i) for e in EMOTIONS for i in INTENSITIES]
_MEAN_CLIP_S = 5.5
_MAX_BATCH = 32


def is_test_voice(voice: str) -> bool:
    """True for the held-out voices (see the module docstring)."""
    name = voice.split(":", 1)[-1]
    lang, _, variant = name.partition("+")
    return voice.startswith("espeak:") and (lang in TEST_ACCENTS or variant in TEST_VARIANTS)


def voices() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(piper voices, training espeak voices, test espeak voices)."""
    from train.corpus.tts import ESPEAK_VOICES, PIPER_VOICES

    return (PIPER_VOICES, tuple(v for v in ESPEAK_VOICES if not is_test_voice(v)),
            tuple(v for v in ESPEAK_VOICES if is_test_voice(v)))


def _kokoro_voice(rng: np.random.Generator, *, test: bool) -> str:
    """A Kokoro voice of the train or test pool, a blend of two in 30 % of the draws."""
    from train.corpus.tts_kokoro import TEST_VOICES, TRAIN_VOICES

    pool = TEST_VOICES if test else TRAIN_VOICES
    a = pool[int(rng.integers(len(pool)))]
    if rng.random() >= 0.3:
        return f"kokoro:{a}"
    b = pool[int(rng.integers(len(pool)))]
    return f"kokoro:{a}" if b == a else f"kokoro:{a}+{b}@{rng.uniform(0.2, 0.5):.2f}"


@dataclass(frozen=True)
class GenerateOptions:
    """Options of :func:`generate` (the CLI parses flags into this)."""

    out: str
    hours: float = 2.0
    seed: int = 0
    workers: int = 2
    fps: int = 25
    piper_share: float = 0.5
    kokoro_share: float = 0.0
    min_clip_s: float = 2.0
    max_clip_s: float = 9.0


@dataclass(frozen=True)
class ClipSpec:
    """Everything that determines one generated clip."""

    id: str
    voice: str
    emotion: str
    intensity: int
    split: str
    sentence_ids: tuple[int, ...]
    seed: int
    fps: int
    max_clip_s: float


def plan_clip(opts: GenerateOptions, k: int) -> ClipSpec:
    """The spec of clip ``k`` (a pure function of the seed, k and the options)."""
    rng = np.random.default_rng([opts.seed, k, 1])
    piper, train_voices, test_voices = voices()
    r = rng.random()
    if r < TEST_VOICE_SHARE:
        voice, split = test_voices[int(rng.integers(len(test_voices)))], "test"
        if opts.kokoro_share > 0 and rng.random() < opts.kokoro_share / (1 - TEST_VOICE_SHARE):
            voice = _kokoro_voice(rng, test=True)
    else:
        kokoro_edge = TEST_VOICE_SHARE + opts.piper_share + opts.kokoro_share
        voice = piper[0] if r < TEST_VOICE_SHARE + opts.piper_share else _kokoro_voice(rng, test=False) \
            if r < kokoro_edge else train_voices[int(rng.integers(len(train_voices)))]
        u = rng.random()
        split = "val" if u < 0.05 else "test" if u < 0.09 else "train"
    block = np.random.default_rng([opts.seed, k // len(_COMBOS), 2]).permutation(len(_COMBOS))
    emotion, intensity = _COMBOS[int(block[k % len(_COMBOS)])]
    target_s = rng.uniform(opts.min_clip_s, opts.max_clip_s)
    candidates = draw_sentence_ids(split, 4, rng)
    chosen, est = [], 0.0
    for sid in candidates:
        chosen.append(sid)
        est += len(sentence(sid).split()) / 2.8 + 0.35
        if est >= target_s:
            break
    return ClipSpec(f"tts-s{opts.seed}-{k:06d}", voice, emotion, intensity, split, tuple(chosen),
                    int(rng.integers(2**31)), int(opts.fps), float(opts.max_clip_s))


def make_clip(spec: ClipSpec, out: str) -> dict:
    """Synthesize, animate and write one clip (or read its entry back if it already exists)."""
    from train.corpus.face import face_curves
    from train.corpus.pauses import trim_phrase_ends
    from train.corpus.relabel import LABELS
    from train.corpus.tts import emotion_prosody, pad_silence, synthesize

    if fmt.clip_exists(out, spec.id):
        return fmt.read_entry(out, spec.id)
    prosody = emotion_prosody(spec.emotion, spec.intensity)
    sids = list(spec.sentence_ids)
    while True:
        text = " ".join(sentence(s) for s in sids)
        speech = synthesize(text, spec.voice, prosody, seed=spec.seed)
        if speech.duration_s <= spec.max_clip_s + 1.5 or len(sids) == 1:
            break
        sids.pop()
    pad = np.random.default_rng([spec.seed, 4]).uniform((0.05, 0.1), (0.4, 0.5))
    speech = pad_silence(speech, float(pad[0]), float(pad[1]))
    phones = trim_phrase_ends(speech.phones, speech.audio)
    bs = face_curves(phones, speech.audio, spec.fps, spec.emotion, spec.intensity,
                     np.random.default_rng([spec.seed, 3]))
    return fmt.write_clip(out, spec.id, speech.audio, bs, spec.fps, emotion=spec.emotion,
                          intensity=spec.intensity, voice=spec.voice, sentence_id=sids[0], text=text,
                          split=spec.split, source="tts", phones=phones,
                          extra={"sentence_ids": sids, "face_seed": spec.seed, "labels": LABELS})


def _make(args: tuple[ClipSpec, str]) -> tuple[dict, bool]:
    spec, out = args
    existed = fmt.clip_exists(out, spec.id)
    return make_clip(spec, out), existed


def _check_resume(opts: GenerateOptions) -> list[dict]:
    path = Path(opts.out) / fmt.MANIFEST
    entries = fmt.read_manifest(opts.out) if path.is_file() else []
    prefix = f"tts-s{opts.seed}-"
    clash = [e for e in entries if e["id"].startswith(prefix) and int(e["fps"]) != opts.fps]
    if clash:
        raise ValueError(f"{opts.out} already holds seed {opts.seed} clips at {clash[0]['fps']} fps; "
                         f"use that --fps, another --seed or another --out")
    return entries


def generate(opts: GenerateOptions, progress=None) -> dict:
    """Fill ``opts.out`` up to ``opts.hours`` of seed ``opts.seed`` speech; returns
    :func:`summarize` of the whole manifest plus this run's ``new_clips``, ``new_audio_s``,
    ``wall_s`` and ``audio_s_per_s`` (generation speed).

    Raises:
        ValueError: bad options or a resume clash (different fps for the same seed).
    """
    check_fps(opts.fps)
    if not (opts.hours > 0 and opts.workers >= 1 and 0 <= opts.piper_share and 0 <= opts.kokoro_share
            and opts.piper_share + opts.kokoro_share <= 1 - TEST_VOICE_SHARE
            and 0 < opts.min_clip_s <= opts.max_clip_s):
        raise ValueError(f"invalid options {opts}: piper_share + kokoro_share must be at most "
                         f"{1 - TEST_VOICE_SHARE:g} (the rest of the clips are the test voices' and espeak's)")
    _check_resume(opts)
    if opts.kokoro_share > 0:  # once, before the workers fork (they would race to build it)
        from train.corpus.tts_kokoro import build_assets

        build_assets()
    target_s, have_s, k = opts.hours * 3600.0, 0.0, 0
    new_clips, new_audio_s, t0 = 0, 0.0, time.perf_counter()
    pool = mp.get_context("fork").Pool(opts.workers) if opts.workers > 1 else None
    try:
        while have_s < target_s:
            n = int(min(_MAX_BATCH, max(1, math.ceil((target_s - have_s) / _MEAN_CLIP_S))))
            jobs = [(plan_clip(opts, k + i), opts.out) for i in range(n)]
            results = pool.map(_make, jobs, chunksize=1) if pool else [_make(j) for j in jobs]
            fmt.update_manifest(opts.out, [e for e, _ in results])
            for entry, existed in results:
                have_s += entry["duration_s"]
                if not existed:
                    new_clips, new_audio_s = new_clips + 1, new_audio_s + entry["duration_s"]
            k += n
            if progress:
                progress(have_s, target_s)
    finally:
        if pool:
            pool.close()
            pool.join()
    wall = time.perf_counter() - t0
    stats = summarize(fmt.read_manifest(opts.out))
    stats.update(new_clips=new_clips, new_audio_s=round(new_audio_s, 1), wall_s=round(wall, 1),
                 audio_s_per_s=round(new_audio_s / wall, 2) if wall > 0 else None)
    return stats


def summarize(entries: list[dict]) -> dict:
    """Hours, clips and voices per split, and clips per emotion, of manifest ``entries``."""
    per: dict = defaultdict(lambda: {"hours": 0.0, "clips": 0, "voices": set()})
    emotions: dict = defaultdict(int)
    for e in entries:
        s = per[e["split"]]
        s["hours"] += e["duration_s"] / 3600.0
        s["clips"] += 1
        s["voices"].add(e["voice"])
        emotions[f"{e['emotion']}{e['intensity']}"] += 1
    splits = {k: {"hours": round(v["hours"], 3), "clips": v["clips"], "voices": len(v["voices"]),
                  "voice_names": sorted(v["voices"])} for k, v in sorted(per.items())}
    train_v = set(splits.get("train", {}).get("voice_names", []))
    unseen = sorted(v for v in splits.get("test", {}).get("voice_names", []) if v not in train_v)
    return {"hours": round(sum(v["hours"] for v in splits.values()), 3), "clips": len(entries),
            "splits": splits, "test_voices_unseen_in_train": unseen, "emotion_intensity_clips": dict(emotions)}
