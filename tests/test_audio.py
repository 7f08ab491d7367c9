"""Audio input: formats, rates, downmix, resampling, and every rejection path (CPU, fast)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cafetalk_rt.audio import duration_s, load_audio, prepare_audio
from cafetalk_rt.errors import AudioInputError, CafeTalkError
from cafetalk_rt.frames import SAMPLE_RATE

REPO = Path(__file__).resolve().parents[1]
TONE_HZ = 440.0


def tone(sample_rate: int, seconds: float = 0.5, hz: float = TONE_HZ, amp: float = 0.5):
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def peak_hz(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    spec = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.fft.rfftfreq(audio.size, 1 / sample_rate)[np.argmax(spec)])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_load_any_rate_and_format_to_mono_16k(tmp_path, fmt, rate):
    left = tone(rate)
    stereo = np.stack([left, -0.5 * left], axis=1)  # (L, 2); mean = 0.25 * left
    path = tmp_path / f"clip_{rate}.{fmt}"
    sf.write(path, stereo, rate)

    audio = load_audio(path)

    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - round(left.size / rate * SAMPLE_RATE)) <= 1
    assert abs(peak_hz(audio) - TONE_HZ) <= 2.0  # bin width 2 Hz for 0.5 s
    if fmt != "ogg":  # lossless: the mean of the channels, not a sum or the first channel
        assert rms(audio[800:-800]) == pytest.approx(0.25 * rms(left), rel=0.02)


def test_load_mp3_when_libsndfile_supports_it(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3 support")
    path = tmp_path / "clip.mp3"
    sf.write(path, tone(44100), 44100)
    audio = load_audio(path)
    assert abs(peak_hz(audio) - TONE_HZ) <= 2.0
    assert abs(audio.size - 8000) < 2000  # mp3 encoders pad with a few hundred samples


def test_16k_mono_passes_through_unchanged(tmp_path):
    x = tone(SAMPLE_RATE)
    path = tmp_path / "a.wav"
    sf.write(path, x, SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path), x)


def _error(path, **kw) -> str:
    with pytest.raises(AudioInputError) as info:
        load_audio(path, **kw)
    assert isinstance(info.value, (CafeTalkError, ValueError))
    msg = str(info.value)
    assert Path(path).name in msg
    return msg


def test_missing_file(tmp_path):
    assert "does not exist" in _error(tmp_path / "nope.wav")


def test_garbage_bytes_named_wav(tmp_path):
    path = tmp_path / "garbage.wav"
    path.write_bytes(b"this is not audio at all " * 40)
    msg = _error(path)
    assert "cannot read" in msg and "wav" in msg and "flac" in msg


def test_zero_byte_file(tmp_path):
    path = tmp_path / "zero.wav"
    path.write_bytes(b"")
    assert "empty" in _error(path)


def test_zero_samples(tmp_path):
    path = tmp_path / "nosamples.wav"
    sf.write(path, np.zeros((0, 2), np.float32), 44100)
    assert "empty (0 samples)" in _error(path)


def test_too_short_says_duration(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, tone(48000, seconds=0.05), 48000)
    msg = _error(path)
    assert "too short" in msg and "0.050 s" in msg and "0.1 s" in msg
    assert load_audio(path, min_duration_s=0.01).size == 800


def test_nan_samples(tmp_path):
    x = tone(22050)
    x[1000] = np.nan
    x[2000] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, x, 22050, subtype="FLOAT")
    msg = _error(path)
    assert "non-finite" in msg and "2 " in msg


def test_silent(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16000, np.float32), 16000)
    assert "silent" in _error(path)


def test_quiet_but_not_silent_is_accepted(tmp_path):
    path = tmp_path / "quiet.wav"
    sf.write(path, tone(16000, amp=1e-3), 16000, subtype="FLOAT")
    assert load_audio(path).size == 8000


def test_directory_is_rejected(tmp_path):
    (tmp_path / "dir.wav").mkdir()
    assert "not a file" in _error(tmp_path / "dir.wav")


def test_prepare_audio_int16_is_scaled_and_named():
    x = (tone(16000) * 32767).astype(np.int16)
    out = prepare_audio(x, 16000)
    assert out.dtype == np.float32 and np.max(np.abs(out)) == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(AudioInputError, match="my_clip"):
        prepare_audio(np.zeros(16000, np.float32), 16000, name="my_clip")


def test_prepare_audio_rejects_channels_first_and_bad_rate():
    x = np.stack([tone(16000)] * 2)  # (2, L): channels first
    with pytest.raises(AudioInputError, match=r"audio\.T"):
        prepare_audio(x, 16000)
    with pytest.raises(AudioInputError, match="sample_rate"):
        prepare_audio(tone(16000), 0)
    with pytest.raises(AudioInputError, match="shape"):
        prepare_audio(np.zeros((4, 4, 4), np.float32), 16000)


def test_prepare_audio_resamples_array():
    out = prepare_audio(np.stack([tone(48000)] * 3, axis=1), 48000)  # (L, 3)
    assert out.shape == (8000,)
    assert abs(peak_hz(out) - TONE_HZ) <= 2.0


def test_duration_s():
    assert duration_s(np.zeros(24000, np.float32)) == 1.5
    assert duration_s(np.zeros((44100, 2)), 44100) == 1.0


def test_import_pulls_in_no_torch_or_matplotlib():
    code = ("import sys, cafetalk_rt.audio, cafetalk_rt.writers, cafetalk_rt.preview.plot, "
            "cafetalk_rt.errors; bad = {'torch', 'matplotlib', 'soundfile', 'soxr'} & "
            "set(sys.modules); assert not bad, bad")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)
