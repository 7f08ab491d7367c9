"""End-to-end behaviour of the shipped default model on the bundled real recording
(CMU ARCTIC arctic_a0009, never used in training) and on edited versions of it."""
import numpy as np
import pytest

from cafetalk_rt.blendshapes import INDEX, MOUTH_IDX, UPPER_FACE_IDX
from cafetalk_rt.frames import SAMPLE_RATE, frame_times
from cafetalk_rt.options import AnimateOptions
from train.phones import BILABIALS, SILENCES, VOWELS, read_phone_lab
from cafetalk_rt.pipeline import DEMO_CLIP

LAB = DEMO_CLIP.with_name("arctic_a0009_phone.lab")


def _openness(anim):
    return anim.channel("jawOpen")


def _phone_mask(phones, fps, n, labels, margin_s=0.0):
    """Frames inside phones with a label in ``labels``, at least ``margin_s`` from their edges."""
    t = frame_times(n, fps)
    m = np.zeros(n, bool)
    for ph, s, e in phones:
        if ph in labels:
            m |= (t >= s + margin_s) & (t < e - margin_s)
    return m


@pytest.mark.parametrize("fps", [25, 30])
@pytest.mark.parametrize("duration_s", [0.15, 1.0, 2.37, 3.0])
def test_shape_range_fps(animator, demo_audio, fps, duration_s):
    audio = demo_audio[: int(duration_s * SAMPLE_RATE)]
    anim = animator.animate(audio, AnimateOptions(fps=fps, num_inference_steps=4))
    assert anim.blendshapes.shape == (int(round(audio.size / SAMPLE_RATE * fps)), 52)
    assert anim.blendshapes.dtype == np.float32 and anim.fps == fps
    assert np.isfinite(anim.blendshapes).all()
    assert anim.blendshapes.min() >= 0.0 and anim.blendshapes.max() <= 1.0


def test_no_nan_on_odd_audio(animator):
    rng = np.random.default_rng(0)
    for audio in (rng.standard_normal(16000).astype(np.float32) * 0.5,  # white noise
                  np.full(8000, 0.3, np.float32) + rng.standard_normal(8000).astype(np.float32) * 1e-3,  # DC
                  np.sign(np.sin(np.arange(24000) / 5)).astype(np.float32)):  # clipped square wave
        anim = animator.animate(audio, AnimateOptions(guidance_scale=5.0, audio_guidance_scale=3.0))
        assert np.isfinite(anim.blendshapes).all()


PAD_S = 0.6


@pytest.fixture(scope="module")
def padded_phones():
    """Phone labels of the demo clip shifted by the room-tone padding (see ``demo_anim``)."""
    phones = [(p, s + PAD_S, e + PAD_S) for p, s, e in read_phone_lab(LAB)]
    return [("sil", 0.0, PAD_S)] + phones + [("sil", phones[-1][2], phones[-1][2] + PAD_S)]


@pytest.fixture(scope="module")
def demo_anim(animator, demo_audio):
    """The real clip with 0.6 s of its own leading room tone (first 0.1 s, tiled) added at both
    ends, so there is silence far from speech in which the mouth must rest."""
    tone = np.tile(demo_audio[:1600], 6)
    return animator.animate(np.concatenate([tone, demo_audio, tone]), AnimateOptions(emotion="neutral"))


def test_mouth_opens_on_vowels_rests_in_silence(demo_anim, padded_phones):
    phones = padded_phones
    n = demo_anim.num_frames
    vowel = _phone_mask(phones, 25, n, VOWELS)
    # rest = silence at least 100 ms away from speech (lips anticipate and trail speech)
    silence = _phone_mask(phones, 25, n, SILENCES, margin_s=0.1)
    jaw = _openness(demo_anim)
    assert vowel.sum() > 10 and silence.sum() > 5
    assert jaw[vowel].mean() > 2.0 * jaw[silence].mean() and jaw[vowel].mean() - jaw[silence].mean() > 0.08


def test_lips_close_on_bilabials(demo_anim, padded_phones):
    """At each /p b m/ the jaw is less open than at the vowels around it."""
    phones = padded_phones
    jaw = _openness(demo_anim)
    t = frame_times(demo_anim.num_frames, 25)
    checked = 0
    for i, (ph, s, e) in enumerate(phones):
        if ph not in BILABIALS:
            continue
        near = [p for p in phones[max(0, i - 3): i + 4] if p[0] in VOWELS]
        if not near:
            continue
        at_b = jaw[(t >= s - 0.02) & (t < e + 0.02)].min()
        vowel_peak = max(jaw[(t >= vs - 0.02) & (t < ve + 0.02)].max() for _, vs, ve in near)
        assert at_b < 0.6 * vowel_peak, (ph, s, at_b, vowel_peak)
        checked += 1
    assert checked >= 2


def test_mouth_follows_speech_energy(animator, demo_audio):
    """Replacing the middle second with silence closes the mouth there."""
    audio = demo_audio.copy()
    audio[16000:32000] = 0.0
    anim = animator.animate(audio, AnimateOptions())
    jaw = _openness(anim)
    ref = _openness(animator.animate(demo_audio, AnimateOptions()))
    mid = slice(30, 45)  # 1.2–1.8 s, well inside the silenced second
    assert jaw[mid].mean() < 0.5 * ref[mid].mean()


def _mean(anim, *names):
    return float(np.mean([anim.channel(n).mean() for n in names]))


@pytest.fixture(scope="module")
def emotion_runs(animator, demo_audio):
    return {(e, i): animator.animate(demo_audio, AnimateOptions(emotion=e, intensity=i))
            for e in ("happy", "sad", "angry", "surprised") for i in (1, 2, 3)}


@pytest.mark.parametrize("level", [1, 2, 3])
def test_emotions_move_expected_channels(emotion_runs, level):
    happy, sad = emotion_runs["happy", level], emotion_runs["sad", level]
    angry, surprised = emotion_runs["angry", level], emotion_runs["surprised", level]
    smile, frown = ("mouthSmileLeft", "mouthSmileRight"), ("mouthFrownLeft", "mouthFrownRight")
    assert _mean(happy, *smile) > _mean(sad, *smile) + 0.05
    assert _mean(sad, *frown) > _mean(happy, *frown) + 0.05
    assert _mean(angry, "browDownLeft", "browDownRight") > _mean(surprised, "browDownLeft", "browDownRight") + 0.05
    assert _mean(surprised, "browInnerUp", "browOuterUpLeft") > _mean(angry, "browInnerUp", "browOuterUpLeft") + 0.05


@pytest.mark.parametrize("emotion,channels", [
    ("happy", ("mouthSmileLeft", "mouthSmileRight")), ("sad", ("mouthFrownLeft", "mouthFrownRight")),
    ("angry", ("browDownLeft", "browDownRight")), ("surprised", ("browInnerUp", "browOuterUpLeft")),
])
def test_intensity_is_monotonic(emotion_runs, emotion, channels):
    levels = [_mean(emotion_runs[emotion, i], *channels) for i in (1, 2, 3)]
    assert levels[0] < levels[1] < levels[2], levels


def test_same_seed_same_output_different_seed_same_lips(animator, demo_audio):
    a = animator.animate(demo_audio, AnimateOptions(seed=1))
    b = animator.animate(demo_audio, AnimateOptions(seed=1))
    c = animator.animate(demo_audio, AnimateOptions(seed=2))
    np.testing.assert_array_equal(a.blendshapes, b.blendshapes)
    upper = np.abs(a.blendshapes[:, UPPER_FACE_IDX] - c.blendshapes[:, UPPER_FACE_IDX]).max()
    assert upper > 0.02  # different detail (blinks, brows)
    jaw_a, jaw_c = _openness(a), _openness(c)
    # same lip timing: the jaw follows the same syllables. The sampler is stochastic in how far
    # the jaw opens per syllable, so seeds are not identical: on this clip, over 10 seed pairs of
    # the shipped model, jawOpen correlates 0.77–0.92 (mean 0.84) and the mouth channels differ
    # by 0.013–0.016 on average, vs a jawOpen swing (std over time) of 0.12.
    assert np.corrcoef(jaw_a, jaw_c)[0, 1] > 0.7
    assert np.abs(a.blendshapes[:, MOUTH_IDX] - c.blendshapes[:, MOUTH_IDX]).mean() < 0.03
    # and the seed-to-seed difference is far below how much the mouth moves with the speech
    assert np.abs(jaw_a - jaw_c).mean() < 0.5 * np.abs(jaw_a - jaw_a.mean()).mean()


def test_ddpm_reference_sampler_runs(animator, demo_audio):
    """The paper-style ancestral sampler (here 50 steps to keep the test fast) agrees with DDIM
    on the lip motion."""
    audio = demo_audio[:16000]
    ref = animator.animate(audio, AnimateOptions(sampler="ddpm", num_inference_steps=50))
    fast = animator.animate(audio, AnimateOptions())
    assert np.corrcoef(_openness(ref), _openness(fast))[0, 1] > 0.8
