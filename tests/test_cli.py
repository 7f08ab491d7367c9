"""The ``cafetalk-rt animate`` command: outputs, no-overwrite rule, and clear errors."""
import json

import numpy as np
import pytest
import soundfile as sf

from cafetalk_rt.cli.main import main
from cafetalk_rt.pipeline import DEMO_CLIP
from cafetalk_rt.writers import load_animation


@pytest.fixture(scope="module")
def short_wav(tmp_path_factory, demo_audio):
    p = tmp_path_factory.mktemp("in") / "speech.flac"
    sf.write(p, demo_audio[:24000], 16000)  # 1.5 s
    return p


@pytest.mark.parametrize("ext", [".npz", ".csv", ".json"])
def test_animate_writes_each_format(tmp_path, short_wav, ext, capsys):
    out = tmp_path / f"face{ext}"
    assert main(["animate", str(short_wav), "-o", str(out), "--emotion", "happy", "--fps", "30",
                 "--num-inference-steps", "4"]) == 0
    blend, fps = load_animation(out)
    assert fps == 30 and blend.shape == (45, 52)
    assert "45 frames at 30 fps" in capsys.readouterr().out


def test_npz_contents_and_plot(tmp_path, short_wav):
    out, png = tmp_path / "a.npz", tmp_path / "a.png"
    assert main(["animate", str(short_wav), "-o", str(out), "--plot", str(png), "--seed", "3"]) == 0
    z = np.load(out)
    assert z["blendshapes"].shape == (38, 52) and z["blendshapes"].dtype == np.float32
    assert z["names"][17] == "jawOpen" and float(z["fps"]) == 25.0
    assert json.loads(str(z["metadata"]))["seed"] == 3
    assert png.stat().st_size > 10_000


def test_no_blinks_leaves_only_the_eyes_unblinked(tmp_path, demo_audio):
    from cafetalk_rt.blendshapes import INDEX

    wav = tmp_path / "s.wav"
    sf.write(wav, demo_audio[:64000], 16000)  # 4 s: the seed's first blinks fall inside
    outs = {}
    for flag in ([], ["--no-blinks"]):
        out = tmp_path / f"o{len(flag)}.npz"
        assert main(["animate", str(wav), "-o", str(out), "--num-inference-steps", "2", *flag]) == 0
        outs[bool(flag)] = np.load(out)
    assert json.loads(str(outs[True]["metadata"]))["blinks"] is False
    eye = INDEX["eyeBlinkLeft"]
    assert outs[False]["blendshapes"][:, eye].max() > 0.9 > outs[True]["blendshapes"][:, eye].max()
    np.testing.assert_array_equal(outs[False]["blendshapes"][:, INDEX["jawOpen"]],
                                  outs[True]["blendshapes"][:, INDEX["jawOpen"]])


def test_never_overwrites_without_flag(tmp_path, short_wav, capsys):
    out = tmp_path / "keep.csv"
    out.write_text("user data")
    assert main(["animate", str(short_wav), "-o", str(out)]) == 2
    assert out.read_text() == "user data"
    assert "--overwrite" in capsys.readouterr().err
    assert main(["animate", str(short_wav), "-o", str(out), "--overwrite", "--num-inference-steps", "2"]) == 0
    assert out.read_text().startswith("Timecode,BlendShapeCount")


@pytest.mark.parametrize("args,needle", [
    (["--emotion", "bored"], "use one of"),
    (["--num-inference-steps", "0"], "num_inference_steps"),
    (["--guidance-scale", "nan"], "guidance_scale"),
    (["--seed", "-1"], "seed"),
])
def test_bad_options_clear_errors(tmp_path, short_wav, args, needle, capsys):
    assert main(["animate", str(short_wav), "-o", str(tmp_path / "x.npz"), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "x.npz").exists()


def test_bad_inputs_clear_errors(tmp_path, capsys):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not audio at all" * 10)
    for path, needle in ((tmp_path / "missing.wav", "missing.wav"), (silent, "silent"), (garbage, "garbage.wav")):
        assert main(["animate", str(path), "-o", str(tmp_path / "o.npz")]) == 2
        assert needle in capsys.readouterr().err
    assert main(["animate", str(DEMO_CLIP), "-o", str(tmp_path / "o.fbx")]) == 2
    assert ".npz" in capsys.readouterr().err
