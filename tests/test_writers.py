"""Animation files (npz / Live Link CSV / three.js JSON), atomic no-overwrite writes, the plot."""
import csv
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cafetalk_rt.blendshapes import ARKIT_NAMES, LIVELINK_NAMES
from cafetalk_rt.errors import InputError, OutputExistsError
from cafetalk_rt.preview.plot import plot_animation
from cafetalk_rt.writers import (
    CSV_DECIMALS, atomic_write, livelink_timecode, load_animation, save_animation,
)

FORMATS = ["npz", "csv", "json"]
#: What each format may lose: npz exact, json 7 decimals, csv 6 decimals (+ float32 rounding).
TOL = {"npz": 0.0, "json": 1e-7, "csv": 0.5 * 10.0**-CSV_DECIMALS + 1e-7}
LIVELINK_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,"
    "EyeLookUpLeft,EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,"
    "EyeLookOutRight,EyeLookUpRight,EyeSquintRight,EyeWideRight,JawForward,JawLeft,JawRight,"
    "JawOpen,MouthClose,MouthFunnel,MouthPucker,MouthLeft,MouthRight,MouthSmileLeft,"
    "MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,MouthDimpleRight,"
    "MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,"
    "MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,"
    "MouthUpperUpLeft,MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,"
    "BrowOuterUpRight,CheekPuff,CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,"
    "TongueOut,HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,"
    "RightEyePitch,RightEyeRoll"
)


def anim(num_frames: int = 75, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).random((num_frames, 52), dtype=np.float32)
    x[0, :] = 0.0
    x[1, :] = 1.0
    return x


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("fps", [25, 30])
def test_round_trip(tmp_path, fmt, fps):
    x = anim()
    path = save_animation(tmp_path / f"out.{fmt}", x, fps)
    y, fps_read = load_animation(path)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert fps_read == fps
    np.testing.assert_allclose(y, x, rtol=0, atol=max(TOL[fmt], 1e-12))


def test_extension_is_case_insensitive(tmp_path):
    path = save_animation(tmp_path / "OUT.JSON", anim(), 30)
    assert json.loads(path.read_text())["tracks"]
    np.testing.assert_allclose(load_animation(path)[0], anim(), atol=TOL["json"])


def test_npz_layout_and_metadata(tmp_path):
    path = save_animation(tmp_path / "a.npz", anim(), 25, audio_path="speech.wav",
                          metadata={"seed": 3, "emotion": "happy"})
    with np.load(path, allow_pickle=False) as z:
        assert z["blendshapes"].dtype == np.float32 and z["blendshapes"].shape == (75, 52)
        assert tuple(z["names"]) == ARKIT_NAMES
        assert z["fps"].shape == () and float(z["fps"]) == 25.0
        meta = json.loads(str(z["metadata"]))
    assert meta == {"seed": 3, "emotion": "happy", "audio_path": "speech.wav"}


def test_npz_with_permuted_names_is_reordered(tmp_path):
    x = anim()
    perm = np.random.default_rng(1).permutation(52)
    np.savez(tmp_path / "p.npz", blendshapes=x[:, perm], names=np.array(ARKIT_NAMES)[perm], fps=30.0)
    np.testing.assert_array_equal(load_animation(tmp_path / "p.npz")[0], x)


def test_csv_is_live_link_layout(tmp_path):
    x = anim(70)
    path = save_animation(tmp_path / "take.csv", x, 30)
    rows = list(csv.reader(path.read_text().splitlines()))
    assert ",".join(rows[0]) == LIVELINK_HEADER
    assert tuple(rows[0][2:54]) == LIVELINK_NAMES
    assert len(rows) == 71 and all(len(r) == 63 for r in rows)
    assert [r[0] for r in rows[1:4]] == ["00:00:00:00.000", "00:00:00:01.000", "00:00:00:02.000"]
    assert rows[31][0] == "00:00:01:00.000" and rows[30][0] == "00:00:00:29.000"
    assert {r[1] for r in rows[1:]} == {"61"}
    assert {v for r in rows[1:] for v in r[54:]} == {"0.000000"}  # head/eye rotations
    assert rows[2][2] == "1.000000" and len(rows[5][20].split(".")[1]) == CSV_DECIMALS


def test_livelink_timecode_hours():
    assert livelink_timecode(25 * 3723 + 7, 25) == "01:02:03:07.000"


def test_csv_timecodes_parse_with_openfacefx(tmp_path):
    importers_csv = pytest.importorskip("openfacefx.importers_csv")
    path = save_animation(tmp_path / "take.csv", anim(70), 25)
    tcs = [r[0] for r in list(csv.reader(path.read_text().splitlines()))[1:]]
    secs = [importers_csv._parse_timecode(tc, 25) for tc in tcs]
    np.testing.assert_allclose(secs, np.arange(70) / 25, atol=1e-9)


def test_short_csv_needs_fps(tmp_path):
    path = save_animation(tmp_path / "short.csv", anim(10), 30)
    with pytest.raises(InputError, match="fps="):
        load_animation(path)
    y, fps = load_animation(path, fps=30)
    assert fps == 30 and y.shape == (10, 52)
    with pytest.raises(InputError, match="30 fps"):
        load_animation(save_animation(tmp_path / "long.csv", anim(70), 30), fps=25)


def test_csv_60_rows_per_second_on_30_fps_timecode(tmp_path):
    """Live Link Face's own takes: 60 rows/s, 30 fps timecode, .500 sub-frames."""
    header = LIVELINK_HEADER.split(",")
    lines = [LIVELINK_HEADER]
    for i in range(90):
        s, half = divmod(i, 60)
        tc = f"10:00:{s:02d}:{half // 2:02d}.{500 * (half % 2):03d}"
        lines.append(",".join([tc, "61"] + [f"{(i % 7) / 7:.6f}"] * (len(header) - 2)))
    (tmp_path / "llf.csv").write_text("\n".join(lines) + "\n")
    y, fps = load_animation(tmp_path / "llf.csv")
    assert fps == 60 and y.shape == (90, 52)


def test_json_is_threejs_animation_clip(tmp_path):
    x = anim(50)
    clip = json.loads(save_animation(tmp_path / "c.json", x, 25).read_text())
    assert clip["name"] == "c" and clip["duration"] == pytest.approx(2.0)
    assert "fps" not in clip  # AnimationClip.parse would divide every time by it
    assert clip["frameRate"] == 25 and clip["blendshapeNames"] == list(ARKIT_NAMES)
    assert len(clip["tracks"]) == 52
    jaw = clip["tracks"][ARKIT_NAMES.index("jawOpen")]
    assert jaw["name"] == ".morphTargetInfluences[jawOpen]" and jaw["type"] == "number"
    np.testing.assert_allclose(jaw["times"], np.arange(50) / 25)
    np.testing.assert_allclose(jaw["values"], x[:, 17], atol=1e-7)


def test_json_with_threejs_fps_convention_is_read(tmp_path):
    """A clip whose times are frame numbers plus ``fps`` (what ``parse`` scales)."""
    x = anim(20)
    tracks = [{"name": f"Face.morphTargetInfluences[{n}]", "type": "number",
               "times": list(range(20)), "values": x[:, c].tolist()} for c, n in enumerate(ARKIT_NAMES)]
    (tmp_path / "f.json").write_text(json.dumps({"name": "f", "fps": 24, "tracks": tracks}))
    y, fps = load_animation(tmp_path / "f.json")
    assert fps == 24
    np.testing.assert_allclose(y, x, atol=1e-7)


def test_unknown_extension_lists_supported(tmp_path):
    with pytest.raises(InputError, match=r"\.npz, \.csv, \.json"):
        save_animation(tmp_path / "a.fbx", anim(), 30)
    assert not (tmp_path / "a.fbx").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_overwrite_keeps_existing_file(tmp_path, fmt):
    path = tmp_path / f"a.{fmt}"
    path.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        save_animation(path, anim(), 30)
    assert path.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == [path.name]
    save_animation(path, anim(), 30, overwrite=True)
    np.testing.assert_allclose(load_animation(path)[0], anim(), atol=TOL[fmt] + 1e-12)


def test_missing_parent_dir_is_an_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        save_animation(tmp_path / "no" / "a.npz", anim(), 30)
    assert not (tmp_path / "no").exists()


def test_atomic_write_leaves_no_temp_files(tmp_path):
    for fmt in FORMATS:
        save_animation(tmp_path / f"a.{fmt}", anim(), 30)
    assert sorted(os.listdir(tmp_path)) == ["a.csv", "a.json", "a.npz"]
    mode = (tmp_path / "a.npz").stat().st_mode & 0o777
    assert mode & 0o044, "file must be readable as a normal open() would make it, not 0600"


def test_atomic_write_failure_cleans_up_and_keeps_old(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(path, overwrite=True) as fh:
            fh.write(b"half")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.bin"]


def test_csv_rejects_fractional_fps(tmp_path):
    with pytest.raises(InputError, match="whole number"):
        save_animation(tmp_path / "a.csv", anim(), 29.97)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("bad, match", [
    (np.zeros((10, 51), np.float32), r"\(T, 52\)"),
    (np.zeros((1, 10, 52), np.float32), r"blendshapes\[0\]"),
    (np.zeros((0, 52), np.float32), r"T >= 1"),
    (np.full((10, 52), np.nan, np.float32), "NaN"),
    (np.full((10, 52), 1.01, np.float32), "outside"),
    (np.full((10, 52), -0.01, np.float32), "outside"),
])
def test_bad_blendshapes_rejected(tmp_path, bad, match):
    with pytest.raises(InputError, match=match):
        save_animation(tmp_path / "a.npz", bad, 30)
    assert os.listdir(tmp_path) == []


def test_tiny_overshoot_is_clipped(tmp_path):
    x = anim()
    x[5, 3], x[6, 4] = 1.0005, -0.0005
    y, _ = load_animation(save_animation(tmp_path / "a.npz", x, 30))
    assert y[5, 3] == 1.0 and y[6, 4] == 0.0


def test_bad_fps_and_metadata_rejected(tmp_path):
    with pytest.raises(InputError, match="fps"):
        save_animation(tmp_path / "a.npz", anim(), 0)
    with pytest.raises(InputError, match="JSON"):
        save_animation(tmp_path / "a.npz", anim(), 30, metadata={"x": object()})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=arrays(np.float32, st.tuples(st.integers(31, 80), st.just(52)),
                elements=st.floats(0, 1, width=32)),
       fmt=st.sampled_from(FORMATS), fps=st.sampled_from([25, 30]))
def test_round_trip_property(tmp_path, x, fmt, fps):
    path = save_animation(tmp_path / f"h.{fmt}", x, fps, overwrite=True)
    y, fps_read = load_animation(path)
    assert fps_read == fps
    np.testing.assert_allclose(y, x, rtol=0, atol=TOL[fmt] + 1e-12)


def test_plot_png(tmp_path):
    audio = (0.3 * np.sin(np.arange(32000) / 16000 * 2 * np.pi * 5)).astype(np.float32)
    path = plot_animation(tmp_path / "p.png", audio, anim(60), 30, title="demo")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    img = imread(path)  # (H, W, 4) float in [0, 1]
    assert img.shape[0] >= 600 and img.shape[1] >= 1000
    ink = np.mean(img[..., :3].min(axis=-1) < 0.9)  # fraction of non-white pixels
    assert ink > 0.05, f"plot looks empty ({ink:.3f} of pixels drawn)"
    with pytest.raises(OutputExistsError):
        plot_animation(path, audio, anim(60), 30)
    plot_animation(path, audio, anim(60), 30, overwrite=True)
    assert os.listdir(tmp_path) == ["p.png"]
    with pytest.raises(InputError, match=r"\(L,\)"):
        plot_animation(tmp_path / "q.png", audio[:, None], anim(60), 30)
