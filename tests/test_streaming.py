"""Streaming: pushed chunks give the offline frames, whatever the chunk sizes.

Tolerance: bit-identical when both paths put the same windows in a backend call
(``max_batch=1``); otherwise ≤ 1e-5, from float rounding of differently sized batches
(measured 1.2e-7). K = 2 and 2 s windows keep the tests fast.
"""
import numpy as np
import pytest

from cafetalk_rt.errors import AudioInputError, InputError
from cafetalk_rt.options import AnimateOptions
from cafetalk_rt.longform.streaming import StreamingAnimator
from cafetalk_rt.longform.windows import WindowOptions

WIN = WindowOptions(window_s=2.0, overlap_s=0.5, context_s=0.5, max_batch=16)
WIN_1 = WindowOptions(window_s=2.0, overlap_s=0.5, context_s=0.5, max_batch=1)
OPT = AnimateOptions(num_inference_steps=2)
ATOL = 1e-5


@pytest.fixture(scope="module")
def clip(demo_audio):
    """~7.2 s of speech with pauses (the real clip twice)."""
    tone = np.tile(demo_audio[:1600], 5)
    return np.concatenate([tone, demo_audio, tone, demo_audio, tone])


def stream(animator, audio, chunk, options=OPT, windows=WIN):
    s = StreamingAnimator(animator, options, windows=windows)
    parts = [s.push(audio[i : i + chunk]) for i in range(0, audio.size, chunk)]
    parts.append(s.flush())
    for p in parts:
        assert p.dtype == np.float32 and p.ndim == 2 and p.shape[1] == 52
    return np.concatenate(parts), parts


@pytest.fixture(scope="module")
def offline(animator, clip):
    return {(fps, w.max_batch): animator.animate(clip, AnimateOptions(num_inference_steps=2, fps=fps), windows=w).blendshapes
            for fps in (25, 30) for w in (WIN, WIN_1)}


@pytest.mark.parametrize("chunk", [8000, 7919, 1237])
def test_streaming_equals_offline(animator, clip, offline, chunk):
    y, parts = stream(animator, clip, chunk)
    assert y.shape == offline[25, 16].shape
    np.testing.assert_allclose(y, offline[25, 16], atol=ATOL, rtol=0)
    assert sum(len(p) > 0 for p in parts) >= 3  # frames come out along the way, not only at flush


@pytest.mark.parametrize("fps", [25, 30])
def test_streaming_is_bit_identical_with_equal_batches(animator, clip, offline, fps):
    y, _ = stream(animator, clip, 8000, AnimateOptions(num_inference_steps=2, fps=fps), WIN_1)
    assert np.array_equal(y, offline[fps, 1])


def test_one_sample_chunks(animator, clip, offline):
    audio = clip[: 5 * 16000]
    s = StreamingAnimator(animator, OPT, windows=WIN_1)
    parts = [s.push(audio[i : i + 1]) for i in range(audio.size)] + [s.flush()]
    assert np.array_equal(np.concatenate(parts), animator.animate(audio, OPT, windows=WIN_1).blendshapes)


def test_30fps_any_chunks(animator, clip, offline):
    y, _ = stream(animator, clip, 3001, AnimateOptions(num_inference_steps=2, fps=30))
    np.testing.assert_allclose(y, offline[30, 16], atol=ATOL, rtol=0)


def test_first_frames_after_the_look_ahead(animator, clip):
    s = StreamingAnimator(animator, OPT, windows=WIN)
    assert s.first_frame_delay_s == pytest.approx(WIN.window_s + WIN.context_s)
    need = int(round(s.first_frame_delay_s * 16000))
    assert s.push(clip[: need - 1]).shape == (0, 52)
    first = s.push(clip[need - 1 : need])
    assert first.shape == (round((WIN.window_s - WIN.overlap_s) * 25), 52)  # window 0 minus its overlap


def test_short_stream_is_one_piece(animator, clip):
    """A stream that ends before the first window completes is animated in one piece at flush."""
    audio = clip[: int(2.3 * 16000)]
    y, parts = stream(animator, audio, 4000)
    assert all(len(p) == 0 for p in parts[:-1])
    assert np.array_equal(y, animator.animate(audio, OPT, windows=WIN).blendshapes)


def test_default_windows_and_defaults(animator, clip):
    """Default WindowOptions (10 s): a 7 s stream is one window, emitted at flush."""
    s = StreamingAnimator(animator, OPT)
    assert s.first_frame_delay_s == pytest.approx(11.0)
    assert s.push(clip).shape == (0, 52)
    assert np.array_equal(s.flush(), animator.animate(clip, OPT).blendshapes)


def test_memory_stays_bounded(animator, clip):
    s = StreamingAnimator(animator, AnimateOptions(num_inference_steps=1, guidance_scale=1.0), windows=WIN)
    long = np.concatenate([clip] * 3)  # 21.6 s
    for i in range(0, long.size, 8000):
        s.push(long[i : i + 8000])
        assert s._audio_len <= 16000 * (WIN.window_s + 2 * WIN.context_s) + 2 * 8000
        assert len(s._noise) <= 2 * 25 * WIN.window_s
    s.flush()
    assert s.num_frames_emitted == round(long.size / 640)


def test_bad_input(animator, clip):
    s = StreamingAnimator(animator, OPT, windows=WIN)
    with pytest.raises(AudioInputError, match="float"):
        s.push(np.zeros((10, 2), np.float32))
    with pytest.raises(AudioInputError, match="float"):
        s.push(np.zeros(10, np.int16))
    with pytest.raises(AudioInputError, match="non-finite"):
        s.push(np.array([0.0, np.nan], np.float32))
    assert s.push(np.zeros(0, np.float32)).shape == (0, 52)
    s.push(clip[:16000])
    s.flush()
    with pytest.raises(InputError, match="flush"):
        s.push(clip[:10])
    with pytest.raises(InputError, match="flushed"):
        s.flush()
    silent = StreamingAnimator(animator, OPT, windows=WIN)
    silent.push(np.zeros(5 * 16000, np.float32))
    with pytest.raises(AudioInputError, match="silent"):
        silent.flush()
