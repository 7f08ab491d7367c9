"""The runtime as a default install gets it: no torch, transformers or matplotlib (they are made
unimportable in a child interpreter). The CLI animates on the shipped graphs, emotion, AU spans
and long audio included, and every feature that needs an extra says which one, before any work
is done and without writing anything."""
import subprocess
import sys

import numpy as np
import pytest

from cafetalk_rt.model_files import DEMO_CLIP
from cafetalk_rt.writers import load_animation

BLOCKED = ("torch", "transformers", "matplotlib", "sentence_transformers", "onnx", "export", "train")


def _cli(*args: str) -> subprocess.CompletedProcess:
    code = ("import sys\n"
            f"for m in {BLOCKED!r}: sys.modules[m] = None  # as if not installed\n"
            "from cafetalk_rt.cli import main\n"
            f"sys.exit(main({list(args)!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)


def test_animate_without_torch(tmp_path):
    out = tmp_path / "face.csv"
    r = _cli("animate", str(DEMO_CLIP), "-o", str(out), "--emotion", "happy", "--intensity", "2",
             "--au", "AU12=0.8@0.5-2.0")
    assert r.returncode == 0, r.stderr
    blend, fps = load_animation(out)[:2]
    assert fps == 25 and blend.shape == (77, 52) and blend.std(axis=0).max() > 0.05


def test_long_audio_without_torch(tmp_path):
    import soundfile as sf

    from cafetalk_rt.audio import load_audio

    wav = tmp_path / "long.wav"
    audio = np.tile(load_audio(DEMO_CLIP), 5)  # 15.5 s: two windows
    sf.write(wav, audio, 16_000)
    r = _cli("animate", str(wav), "-o", str(tmp_path / "long.npz"))
    assert r.returncode == 0, r.stderr
    assert load_animation(tmp_path / "long.npz")[0].shape == (round(audio.size / 16_000 * 25), 52)


@pytest.mark.parametrize("flags,extra", [
    (["--plot", "x.png"], "cafetalk-rt[preview]"),
    (["--instruction", "smile at the end"], "cafetalk-rt[instructions]"),
    (["--backend", "torch"], "cafetalk-rt[torch]"),
])
def test_a_missing_extra_is_named_before_any_work(tmp_path, flags, extra):
    out = tmp_path / "face.csv"
    flags = [str(tmp_path / f) if f.endswith(".png") else f for f in flags]
    r = _cli("animate", str(DEMO_CLIP), "-o", str(out), *flags)
    assert r.returncode == 2 and extra in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
