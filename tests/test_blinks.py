"""The seeded blink layer (:mod:`cafetalk_rt.blinks`): full blinks (≥ 0.9 on ≥ 3 frames) at a
speaker's rate, the same for one seed offline, live and in Node.js, only on the eyes, and
removable; the training targets lose the generator's blinks."""
import json
from dataclasses import replace
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cafetalk_rt import AnimateOptions
from cafetalk_rt.blendshapes import INDEX, NUM_BLENDSHAPES
from cafetalk_rt.blinks import BlinkTrack, apply_blinks, blink_curve, hash_uniform
from cafetalk_rt.errors import InputError
from cafetalk_rt.longform.live import LiveStream
from train.binarize import runs as bool_runs

EYES = [INDEX[n] for n in ("eyeBlinkLeft", "eyeBlinkRight", "eyeWideLeft", "eyeWideRight",
                           "eyeSquintLeft", "eyeSquintRight")]


def test_hash_is_splitmix64():
    # SplitMix64 seeded with 0 first returns 0xE220A8397B1DCDAF (the reference implementation).
    assert hash_uniform(0, 0) == (0xE220A8397B1DCDAF >> 11) / 2.0**53
    u = np.array([hash_uniform(123, k) for k in range(4000)])
    assert 0.0 <= u.min() and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.02
    assert hash_uniform(-1, 3) == hash_uniform(2**64 - 1, 3)  # seeds wrap as uint64


@pytest.mark.parametrize("fps", [25, 30])
@pytest.mark.parametrize("seed", [0, 1, 99])
def test_blinks_close_fully_at_a_speakers_rate(seed, fps):
    curve = blink_curve(seed, 0, 120 * fps, fps)  # two minutes
    runs = bool_runs(curve > 0.5)
    assert 20 <= len(runs) <= 50, f"{len(runs)} blinks in 2 minutes"
    for a, b in runs:
        assert (curve[max(0, a - 1) : b + 1] >= 0.9).sum() >= 3  # ≥ 0.9 on ≥ 3 frames
        assert 0.12 <= (b - a) / fps <= 0.25  # above half closed for 120–250 ms
    assert curve.dtype == np.float32 and curve.min() >= 0.0 and curve.max() <= 1.0
    assert not np.array_equal(curve, blink_curve(seed + 1, 0, 120 * fps, fps))


def test_a_track_read_in_pieces_equals_the_whole():
    whole = blink_curve(5, 0, 3000, 30)
    track = BlinkTrack(5)
    pieces, start = [], 0
    for n in (1, 7, 0, 250, 3, 2000, 739):
        pieces.append(track.curve(start, n, 30))
        start += n
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


def test_layer_touches_only_the_eyes_and_keeps_the_input():
    rng = np.random.default_rng(0)
    face = rng.uniform(0, 1, (500, NUM_BLENDSHAPES)).astype(np.float32)
    before = face.copy()
    out = apply_blinks(face, 4, 25)
    np.testing.assert_array_equal(face, before)
    others = np.setdiff1d(np.arange(NUM_BLENDSHAPES), EYES)
    np.testing.assert_array_equal(out[:, others], face[:, others])
    b = blink_curve(4, 0, 500, 25)
    np.testing.assert_allclose(out[:, INDEX["eyeBlinkLeft"]], np.maximum(face[:, INDEX["eyeBlinkLeft"]], b))
    np.testing.assert_allclose(out[:, INDEX["eyeWideRight"]], face[:, INDEX["eyeWideRight"]] * (1 - b), atol=1e-6)
    with pytest.raises(ValueError, match="52"):
        apply_blinks(face[:, :10], 4, 25)


def test_animation_blinks_fully_and_only_on_the_eyes(animator, demo_audio):
    with_blinks = animator.animate(demo_audio, AnimateOptions(seed=2)).blendshapes
    without = animator.animate(demo_audio, AnimateOptions(seed=2, blinks=False)).blendshapes
    level = with_blinks[:, [INDEX["eyeBlinkLeft"], INDEX["eyeBlinkRight"]]].mean(1)
    runs = bool_runs(level > 0.5)
    assert runs, "no blink in the bundled clip"
    assert all((level[max(0, a - 1) : b + 1] >= 0.9).sum() >= 3 for a, b in runs)
    others = np.setdiff1d(np.arange(NUM_BLENDSHAPES), EYES)
    np.testing.assert_array_equal(with_blinks[:, others], without[:, others])
    assert without[:, INDEX["eyeBlinkLeft"]].max() < 0.5, "the denoiser itself should not blink"
    with pytest.raises(InputError, match="blinks"):
        AnimateOptions(blinks="yes")


def test_live_stream_blinks_like_offline(animator, demo_audio):
    clip = demo_audio[:64_000]  # 4 s
    opts = AnimateOptions(seed=8, num_inference_steps=2, fps=30)
    out = []
    for blinks in (True, False):
        s = LiveStream(animator, replace(opts, blinks=blinks))
        out.append(np.concatenate([s.push(clip[i : i + 1000]) for i in range(0, clip.size, 1000)] + [s.flush()]))
    expected = apply_blinks(out[1], 8, 30)
    np.testing.assert_allclose(out[0], expected, atol=1e-6)
    offline = animator.animate(clip, opts).blendshapes
    np.testing.assert_allclose(out[0][:, INDEX["eyeBlinkLeft"]] >= 0.9, offline[:, INDEX["eyeBlinkLeft"]] >= 0.9)


def test_node_reproduces_the_blinks():
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the Node.js blink reference cannot run here")
    script = Path(__file__).parent / "node" / "blinks.mjs"
    for seed, start, n, fps in ((0, 0, 400, 25), (12345, 1000, 300, 30)):
        req = json.dumps({"seed": seed, "start_frame": start, "num_frames": n, "fps": fps})
        proc = subprocess.run(["node", str(script), req], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        js = np.array(json.loads(proc.stdout)["curve"])
        np.testing.assert_allclose(js, BlinkTrack(seed).curve(start, n, fps), atol=1e-6)
        assert js.max() > 0.9


def test_training_targets_lose_the_generators_blinks():
    from train.dataset import remove_generated_blinks

    face = np.zeros((400, NUM_BLENDSHAPES), np.float32)
    face[:, INDEX["eyeWideLeft"]] = face[:, INDEX["eyeWideRight"]] = 0.3
    face[:, INDEX["eyeSquintLeft"]] = np.linspace(0.1, 0.2, 400)
    blinking = apply_blinks(face, 1, 25)
    assert blinking[:, INDEX["eyeBlinkLeft"]].max() > 0.9
    clean = remove_generated_blinks(blinking)
    assert clean[:, INDEX["eyeBlinkLeft"]].max() == 0.0 == clean[:, INDEX["eyeBlinkRight"]].max()
    np.testing.assert_allclose(clean[:, INDEX["eyeWideLeft"]], 0.3, atol=1e-6)
    np.testing.assert_allclose(clean[:, INDEX["eyeSquintLeft"]], face[:, INDEX["eyeSquintLeft"]], atol=1e-3)
