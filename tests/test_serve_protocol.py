"""The /v1/stream message parsing and PCM decoding (no server): defaults, clear errors, samples
split across messages."""
import numpy as np
import pytest

from cafetalk_rt.serve.protocol import PcmDecoder, ProtocolError, StartRequest, parse_control, parse_start, parse_text


def test_start_defaults_are_the_clis():
    assert parse_start({"type": "start"}) == StartRequest(sample_rate=16000, format="f32le", emotion="neutral",
                                                          intensity=2, lookahead_ms=160.0, seed=0, fps=25,
                                                          blinks=True)
    r = parse_start({"type": "start", "sample_rate": 48000, "format": "s16le", "emotion": "happy", "intensity": 3,
                     "lookahead_ms": 80, "seed": 5, "fps": 30, "blinks": False})
    assert (r.sample_rate, r.format, r.emotion, r.intensity, r.lookahead_ms, r.seed, r.fps, r.blinks) == \
        (48000, "s16le", "happy", 3, 80.0, 5, 30, False)


@pytest.mark.parametrize("msg, words", [
    ({"type": "start", "sample_rate": 100}, "sample_rate must be an integer in [8000"),
    ({"type": "start", "sample_rate": 16000.5}, "sample_rate must be an integer"),
    ({"type": "start", "format": "mp3"}, "format must be one of f32le, s16le"),
    ({"type": "start", "intensity": 7}, "intensity must be an integer in [1, 3]"),
    ({"type": "start", "intensity": True}, "intensity must be"),
    ({"type": "start", "emotion": "zzz"}, "unknown emotion 'zzz'"),
    ({"type": "start", "voice": "x"}, "unknown start field(s) voice"),
    ({"type": "start", "lookahead_ms": -1}, "lookahead_ms must be a number in [0, 1000]"),
    ({"type": "start", "blinks": "no"}, "blinks must be true or false"),
])
def test_bad_start_fields_say_what_to_fix(msg, words):
    with pytest.raises(ProtocolError) as e:
        parse_start(msg)
    assert words in str(e.value)


def test_text_and_control_messages():
    assert parse_text('{"type": "end"}') == {"type": "end"}
    for text, words in (("{oops", "malformed JSON"), ("[1]", "unknown message type"), ('{"type": "x"}', "'x'")):
        with pytest.raises(ProtocolError) as e:
            parse_text(text)
        assert words in str(e.value)
    assert parse_control({"type": "control", "intensity": 1}) == (None, 1)
    assert parse_control({"type": "control", "emotion": "sad"}) == ("sad", None)
    with pytest.raises(ProtocolError, match="emotion"):
        parse_control({"type": "control"})


@pytest.mark.parametrize("fmt", ["f32le", "s16le"])
def test_pcm_split_anywhere_decodes_the_same(fmt):
    x = np.sin(np.arange(1000) / 7).astype(np.float32) * 0.5
    raw = x.astype("<f4").tobytes() if fmt == "f32le" else (x * 32768).round().astype("<i2").tobytes()
    whole = PcmDecoder(fmt).decode(raw)
    d = PcmDecoder(fmt)
    cuts = [0, 3, 4, 1001, 1002, len(raw) - 1, len(raw)]
    parts = np.concatenate([d.decode(raw[a:b]) for a, b in zip(cuts, cuts[1:])])
    assert np.array_equal(parts, whole) and whole.size == 1000
    assert np.abs(whole - x).max() < (1e-7 if fmt == "f32le" else 1 / 32768)
    with pytest.raises(ProtocolError, match="NaN"):
        PcmDecoder("f32le").decode(np.array([np.nan], "<f4").tobytes())
