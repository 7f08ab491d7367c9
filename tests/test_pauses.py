"""Phrase ends trimmed to the voice (train.corpus.pauses) and the corpus relabel
(train.corpus.relabel): the generated face rests once the speech stops, for every TTS engine."""
import shutil

import numpy as np
import pytest

from cafetalk_rt.blendshapes import INDEX
from cafetalk_rt.frames import SAMPLE_RATE, frame_times
from train.corpus import format as fmt
from train.corpus.face import face_curves
from train.corpus.pauses import FLOOR_DB, KEEP_S, frame_levels_db, trim_phrase_ends
from train.corpus.relabel import LABELS, relabel
from train.corpus.tts import pad_silence, synthesize
from train.evaluate import lip_opening

_KOKORO = pytest.param("kokoro:af_heart", marks=pytest.mark.skipif(
    shutil.which("npm") is None, reason="npm is missing: the Kokoro voices come from `npm pack kokoro-js`"))


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


def _contiguous(phones, end):
    assert phones[0][1] == 0.0 and phones[-1][2] == pytest.approx(end)
    for (_, _, e0), (_, s1, e1) in zip(phones, phones[1:]):
        assert s1 == pytest.approx(e0) and e1 > s1


def test_overlong_phrase_end_moves_back_to_the_voice():
    # voice 0–1.0 s and 1.5–2.0 s; the engine says the first phrase lasts to 1.4 s and the last to 2.4 s
    audio = np.concatenate([_tone(1.0), _silence(0.5), _tone(0.5), _silence(0.5)])
    phones = [("h", 0.0, 0.3), ("ˈɛ", 0.3, 0.8), ("l", 0.8, 1.1), ("oʊ", 1.1, 1.4), ("_", 1.4, 1.5),
              ("b", 1.5, 1.6), ("ɔ", 1.6, 2.4), ("_", 2.4, 2.5)]
    out = trim_phrase_ends(phones, audio)
    _contiguous(out, 2.5)
    assert [p for p, _, _ in out] == [p for p, _, _ in phones]
    assert out[3][2] == pytest.approx(1.0 + KEEP_S, abs=0.011) and out[4][1] == out[3][2]
    assert out[6][2] == pytest.approx(2.0 + KEEP_S, abs=0.011)
    assert out[:2] == phones[:2] and out[5] == phones[5]  # phones inside the voice keep their times
    assert out[2][1] == 0.8 and out[2][2] < 1.0  # "l" and "oʊ" reach past it: compressed into 0.8–1.02 s
    assert trim_phrase_ends(out, audio) == out  # idempotent


def test_phones_past_the_voice_are_compressed_and_a_final_pause_is_added():
    audio = np.concatenate([_tone(0.6), _silence(0.6)])
    phones = [("m", 0.0, 0.4), ("ˈaɪ", 0.4, 0.9), ("n", 0.9, 1.2)]  # no pause at the end
    out = trim_phrase_ends(phones, audio)
    _contiguous(out, 1.2)
    assert [p for p, _, _ in out] == ["m", "ˈaɪ", "n", "_"]
    assert out[0] == phones[0] and out[2][2] == pytest.approx(0.6 + KEEP_S, abs=0.011)
    assert out[1][2] - out[1][1] > out[2][2] - out[2][1] > 0  # proportional: the vowel stays longer


def test_untouched_where_the_voice_reaches_the_end_or_there_is_none():
    audio = np.concatenate([_tone(1.0), _silence(0.3)])
    phones = [("s", 0.0, 0.5), ("iː", 0.5, 1.0), ("_", 1.0, 1.3)]
    assert trim_phrase_ends(phones, audio) == phones
    assert trim_phrase_ends(phones, _silence(1.3)) == phones
    # a quiet trailing fricative 30 dB under the vowel is voice, not silence
    quiet = np.concatenate([_tone(0.8), 0.01 * np.random.default_rng(0).standard_normal(3200).astype(np.float32),
                            _silence(0.3)])
    soft = [("ˈɪ", 0.0, 0.8), ("s", 0.8, 1.0), ("_", 1.0, 1.3)]
    assert trim_phrase_ends(soft, quiet)[1][2] == pytest.approx(1.0, abs=0.03)
    with pytest.raises(ValueError, match="needs phones and audio"):
        trim_phrase_ends([], audio)
    assert frame_levels_db(_tone(0.1)).shape == (10,)


@pytest.mark.parametrize("voice", ["piper:joe", "espeak:en-gb-x-rp+f3", _KOKORO])
def test_generated_mouth_rests_once_the_voice_stops(voice):
    """Every engine: after trimming, the last spoken phone ends within 40 ms of the last voiced
    frame and the lips have closed (opening < 0.02; the face's coarticulation releases over about
    0.25 s) 0.3 s after it. Kokoro's untrimmed timing holds the last phone ~0.2–0.4 s into the
    silence and fails both."""
    speech = pad_silence(synthesize("Where do we go from here? Nobody knows.", voice, seed=2), 0.2, 0.6)
    phones = trim_phrase_ends(speech.phones, speech.audio)
    level = frame_levels_db(speech.audio)
    voice_end = (np.flatnonzero(level > np.percentile(level, 95) - FLOOR_DB)[-1] + 1) * 0.01
    last = [e for p, _, e in phones if p != "_"][-1]
    assert last - voice_end < 0.04
    bs = face_curves(phones, speech.audio, 25, "neutral", 1, np.random.default_rng(0))
    after = frame_times(len(bs), 25) > voice_end + 0.3
    assert lip_opening(bs)[after].max() < 0.02
    assert bs[after, INDEX["jawOpen"]].max() < 0.02


def test_relabel_redraws_old_clips_and_keeps_the_originals(tmp_path):
    from train.corpus.generate import GenerateOptions, generate

    generate(GenerateOptions(out=str(tmp_path), hours=0.002, seed=4, workers=1))
    entries = fmt.read_manifest(tmp_path)
    entry = entries[0]
    assert entry["labels"] == LABELS and "face_seed" in entry
    audio, trimmed_bs, fps = fmt.load_clip(tmp_path, entry)
    with np.load(tmp_path / entry["motion"]) as z:
        phones = [(str(p), float(s), float(e)) for p, s, e in zip(z["phones"], z["phone_start_s"], z["phone_end_s"])]
    # an "old" clip: no face seed in the entry, its last spoken phone held 0.3 s into the silence
    k = max(i for i, p in enumerate(phones) if p[0] != "_")
    assert k + 1 < len(phones)  # the generator pads at least 0.1 s of silence
    late = phones[k][2] + 0.7 * (phones[-1][2] - phones[k][2])
    old_phones = phones[:k] + [(phones[k][0], phones[k][1], late), ("_", late, phones[-1][2])]
    old = {key: v for key, v in entry.items() if key not in ("face_seed", "labels")}
    old_bs = face_curves(old_phones, audio, int(fps), old["emotion"], old["intensity"],
                         np.random.default_rng([entry["face_seed"], 3]))
    fmt.write_motion(tmp_path, old, old_bs, old_phones)
    fmt.update_manifest(tmp_path, [old])
    assert relabel(tmp_path) == {"relabelled": 1, "done": len(entries) - 1}
    new = fmt.read_manifest(tmp_path)[0]
    assert new["face_seed"] == entry["face_seed"] and new["labels"] == LABELS
    _, bs, _ = fmt.load_clip(tmp_path, new)
    # the generator's own face, recovered (phrase ends found again on the 16-bit audio: ±10 ms)
    assert np.abs(bs - trimmed_bs).mean() < 2e-3 and np.abs(old_bs - trimmed_bs).mean() > 4 * np.abs(bs - trimmed_bs).mean()
    with np.load(tmp_path / "motion_orig" / f"{entry['id']}.npz") as z:
        np.testing.assert_array_equal(z["blendshapes"], old_bs)  # the original is kept
    assert relabel(tmp_path) == {"done": len(entries)}
