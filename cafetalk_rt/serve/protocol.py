"""The ``/v1/stream`` WebSocket protocol: message parsing and PCM decoding, no I/O.

Client → server: a JSON ``start`` message (:class:`StartRequest`), binary messages of mono PCM
(``f32le`` or ``s16le``, any size, at ``sample_rate``), ``{"type": "control", "emotion": …,
"intensity": …}`` at any time, and ``{"type": "end"}``. Server → client: ``ready``, ``frames``,
``done`` and ``error`` (see README "Serving"). Every malformed message raises
:class:`ProtocolError` with a message that says how to fix it; the server sends it as
``{"type": "error", "message": …}`` and keeps the connection.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from cafetalk_rt.control.emotions import EMOTIONS, check_intensity, emotion_index
from cafetalk_rt.errors import InputError
from cafetalk_rt.frames import SAMPLE_RATE

#: PCM formats of the binary messages: numpy dtype and the scale to [-1, 1].
FORMATS = {"f32le": ("<f4", 1.0), "s16le": ("<i2", 1.0 / 32768.0)}
MESSAGE_TYPES = ("start", "control", "end")


class ProtocolError(ValueError):
    """A client message that cannot be followed; ``str(e)`` is the message sent back."""


@dataclass(frozen=True)
class StartRequest:
    """The fields of a ``start`` message; defaults are ``cafetalk-rt stream``'s.

    Attributes:
        sample_rate: Hz of the client's PCM (8000–192000; resampled to 16 kHz).
        format: "f32le" (float32 little-endian in [-1, 1]) or "s16le" (int16 little-endian).
        emotion, intensity: the coarse condition (paper §3.2); intensity 1–3.
        lookahead_ms: future audio each frame waits for (a shipped or exported streaming graph).
        seed: the stream's noise seed (same seed, same frames).
        fps: output frames per second (25 or 30).
        blinks: lay the seed's procedural blinks over the eyes (docs/blinks.md).
    """

    sample_rate: int = SAMPLE_RATE
    format: str = "f32le"
    emotion: str = "neutral"
    intensity: int = 2
    lookahead_ms: float = 160.0
    seed: int = 0
    fps: int = 25
    blinks: bool = True


def parse_text(text: str) -> dict:
    """A JSON text message → its dict (with a known ``type``).

    Raises:
        ProtocolError: not JSON, not an object, or an unknown ``type``.
    """
    try:
        msg = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"malformed JSON message ({e.msg} at character {e.pos}); send one JSON object per "
                            "text message") from None
    if not isinstance(msg, dict) or msg.get("type") not in MESSAGE_TYPES:
        got = msg.get("type") if isinstance(msg, dict) else type(msg).__name__
        raise ProtocolError(f"unknown message type {got!r}; text messages are JSON objects with \"type\" one of "
                            f"{', '.join(MESSAGE_TYPES)}")
    return msg


def _number(msg: dict, key: str, kind, lo, hi):
    v = msg[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and float(v) != int(v)) \
            or not lo <= v <= hi:
        raise ProtocolError(f"{key} must be {'an integer' if kind is int else 'a number'} in [{lo}, {hi}], got {v!r}")
    return kind(v)


def _emotion(msg: dict) -> str:
    try:
        emotion_index(msg["emotion"])
    except (InputError, ValueError, TypeError, KeyError):
        raise ProtocolError(f"unknown emotion {msg['emotion']!r}; use one of {', '.join(EMOTIONS)}") from None
    return msg["emotion"]


def _intensity(msg: dict) -> int:
    v = _number(msg, "intensity", int, 1, 3)
    check_intensity(v)
    return v


def parse_start(msg: dict) -> StartRequest:
    """A ``start`` message → :class:`StartRequest`.

    Raises:
        ProtocolError: an unknown field, or a value out of range (the message names it).
    """
    fields = StartRequest.__dataclass_fields__
    unknown = sorted(set(msg) - set(fields) - {"type"})
    if unknown:
        raise ProtocolError(f"unknown start field(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    kw = {}
    if "sample_rate" in msg:
        kw["sample_rate"] = _number(msg, "sample_rate", int, 8000, 192000)
    if "format" in msg:
        if msg["format"] not in FORMATS:
            raise ProtocolError(f"format must be one of {', '.join(FORMATS)}, got {msg['format']!r}")
        kw["format"] = msg["format"]
    if "emotion" in msg:
        kw["emotion"] = _emotion(msg)
    if "intensity" in msg:
        kw["intensity"] = _intensity(msg)
    if "lookahead_ms" in msg:
        kw["lookahead_ms"] = _number(msg, "lookahead_ms", float, 0, 1000)
    if "seed" in msg:
        kw["seed"] = _number(msg, "seed", int, 0, 2**63 - 1)
    if "fps" in msg:
        if msg["fps"] not in (25, 30):
            raise ProtocolError(f"fps must be 25 or 30, got {msg['fps']!r}")
        kw["fps"] = int(msg["fps"])
    if "blinks" in msg:
        if not isinstance(msg["blinks"], bool):
            raise ProtocolError(f"blinks must be true or false, got {msg['blinks']!r}")
        kw["blinks"] = msg["blinks"]
    return StartRequest(**kw)


def parse_control(msg: dict) -> tuple[str | None, int | None]:
    """A ``control`` message → (emotion or None, intensity or None).

    Raises:
        ProtocolError: neither field, an unknown field, emotion or intensity.
    """
    unknown = sorted(set(msg) - {"type", "emotion", "intensity"})
    if unknown or not ({"emotion", "intensity"} & set(msg)):
        raise ProtocolError("a control message takes \"emotion\" and/or \"intensity\""
                            + (f"; unknown field(s) {', '.join(unknown)}" if unknown else ""))
    return (_emotion(msg) if "emotion" in msg else None), (_intensity(msg) if "intensity" in msg else None)


class PcmDecoder:
    """Binary messages → float32 samples at the client's rate; a sample split across two messages
    is kept until its last byte arrives.

    Raises (``decode``):
        ProtocolError: non-finite float samples.
    """

    def __init__(self, fmt: str):
        self.dtype, self.scale = FORMATS[fmt]
        self.width = np.dtype(self.dtype).itemsize
        self._rest = b""

    def decode(self, data: bytes) -> np.ndarray:
        data = self._rest + bytes(data)
        cut = len(data) - len(data) % self.width
        self._rest = data[cut:]
        x = np.frombuffer(data[:cut], self.dtype).astype(np.float32) * np.float32(self.scale)
        if not np.isfinite(x).all():
            raise ProtocolError("the audio holds NaN or Inf samples; send finite PCM")
        return x
