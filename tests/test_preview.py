"""Preview: the face follows its channels, the .mp4 has sound and the right frames, the .html
page plays in headless Chromium, and the CLI refuses bad requests clearly.

Side convention under test: ARKit ``…Left`` is the subject's left, drawn on the viewer's
right (x > centre), as in ARKit's mirrored front-camera view (``rig.SUBJECT_LEFT_X_SIGN``).
"""
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from cafetalk_rt.blendshapes import ARKIT_NAMES, INDEX
from cafetalk_rt.cli.main import main
from cafetalk_rt.errors import InputError, OutputExistsError
from cafetalk_rt.frames import SAMPLE_RATE
from cafetalk_rt.preview.parts import EYE_CENTER_Y, EYE_OFFSET_X, MOUTH_CENTER
from cafetalk_rt.preview.render import DURATION_TOL_S, PreviewOptions, render_preview
from cafetalk_rt.preview.rig import COLORS
from cafetalk_rt.preview.strip import strip_height
from cafetalk_rt.writers import save_animation

av = pytest.importorskip("av", reason='the preview extra is not installed: pip install "cafetalk-rt[preview]"')
pytest.importorskip("PIL", reason='the preview extra is not installed: pip install "cafetalk-rt[preview]"')

SIZE = 256
FPS = 25
#: Whole-mouth and jaw moves shift both halves; every other Left/Right channel is one-sided.
TWO_SIDED = {"jawLeft", "jawRight", "mouthLeft", "mouthRight"}


def _pose(**weights) -> np.ndarray:
    w = np.zeros(52, np.float32)
    for name, v in weights.items():
        w[INDEX[name]] = v
    return w


def _near(img: np.ndarray, color: str, tol: float = 40.0) -> np.ndarray:
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], float)
    return np.linalg.norm(img[..., :3].astype(float) - rgb, axis=-1) < tol


def _box(img: np.ndarray, cx: float, cy: float, hw: float, hh: float, size: int = SIZE) -> np.ndarray:
    """Crop around (cx, cy) ± (hw, hh) in face units from a face image of ``size`` pixels."""
    return img[int((cy - hh) * size):int((cy + hh) * size), int((cx - hw) * size):int((cx + hw) * size)]


def _eye(img, side: str, size: int = SIZE):
    sign = 1 if side == "Left" else -1  # subject's left = viewer's right
    return _box(img, 0.5 + sign * EYE_OFFSET_X, EYE_CENTER_Y, 0.09, 0.07, size)


def _mouth(img, size: int = SIZE):
    return _box(img, MOUTH_CENTER[0], MOUTH_CENTER[1] + 0.07, 0.16, 0.15, size)


@pytest.fixture(scope="module")
def renderer():
    from cafetalk_rt.preview.face import FaceRenderer

    return FaceRenderer(SIZE)


@pytest.fixture(scope="module")
def neutral(renderer):
    return renderer.render(_pose())


def _synthetic(num_frames: int = 50) -> np.ndarray:
    """Mouth shut until 0.4 s, wide open from 1.0 s; one left blink around 1.6 s."""
    t = np.arange(num_frames) / FPS
    x = np.zeros((num_frames, 52), np.float32)
    x[:, INDEX["jawOpen"]] = np.clip((t - 0.4) / 0.6, 0, 1)
    x[:, INDEX["eyeBlinkLeft"]] = np.abs(t - 1.6) < 0.1
    return x


def _tone(seconds: float) -> np.ndarray:
    n = int(round(seconds * SAMPLE_RATE))
    return (0.2 * np.sin(2 * np.pi * 220 * np.arange(n) / SAMPLE_RATE)).astype(np.float32)


# ---- the face follows its channels ------------------------------------------------------

def test_jaw_open_opens_the_mouth(renderer, neutral):
    opened = renderer.render(_pose(jawOpen=1.0))
    dark_before = _near(_mouth(neutral), COLORS["mouth"]).sum()
    dark_after = _near(_mouth(opened), COLORS["mouth"]).sum()
    assert dark_before < 50 and dark_after > 600, (dark_before, dark_after)
    for side in ("Left", "Right"):  # the eyes do not move
        assert np.array_equal(_eye(opened, side), _eye(neutral, side))


@pytest.mark.parametrize("side,other", [("Left", "Right"), ("Right", "Left")])
def test_blink_closes_one_eye_only(renderer, neutral, side, other):
    blink = renderer.render(_pose(**{f"eyeBlink{side}": 1.0}))
    white_open = _near(_eye(neutral, side), COLORS["white"]).sum()
    white_closed = _near(_eye(blink, side), COLORS["white"]).sum()
    assert white_open > 80 and white_closed < 0.1 * white_open, (white_open, white_closed)
    assert np.array_equal(_eye(blink, other), _eye(neutral, other))  # the other eye is untouched


def test_eye_blink_left_is_on_the_viewers_right(renderer, neutral):
    blink = renderer.render(_pose(eyeBlinkLeft=1.0))
    cols = np.nonzero(np.any(blink != neutral, axis=(0, 2)))[0]
    assert cols.min() > SIZE // 2


@pytest.mark.parametrize("name", ARKIT_NAMES)
def test_every_channel_moves_the_face_on_its_side(renderer, neutral, name):
    changed = np.abs(renderer.render(_pose(**{name: 1.0})).astype(int) - neutral).sum(-1) > 30
    assert changed.sum() > 100, f"{name} barely changes the face ({changed.sum()} px)"
    if name.endswith(("Left", "Right")) and name not in TWO_SIDED:
        on_viewer_right = (np.nonzero(changed)[1] > SIZE / 2).mean()
        own_side = on_viewer_right if name.endswith("Left") else 1 - on_viewer_right
        assert own_side > 0.65, f"{name}: only {own_side:.0%} of the change is on its own side"


@pytest.mark.parametrize("name,sign", [("mouthLeft", 1), ("mouthRight", -1), ("jawLeft", 1), ("jawRight", -1)])
def test_mouth_and_jaw_shift_towards_their_side(renderer, neutral, name, sign):
    lips = COLORS["lower_lip"]
    x0 = np.nonzero(_near(neutral, lips))[1].mean()
    x1 = np.nonzero(_near(renderer.render(_pose(**{name: 1.0})), lips))[1].mean()
    assert sign * (x1 - x0) > 3, (name, x0, x1)


# ---- the video ----------------------------------------------------------------------------

@pytest.mark.parametrize("fps", [25, 30])
def test_mp4_has_video_and_audio_of_the_right_length(tmp_path, fps, caplog):
    num_frames = 2 * fps
    x = _synthetic(num_frames)
    out = tmp_path / "face.mp4"
    with caplog.at_level("INFO", logger="cafetalk_rt"):
        result = render_preview(out, _tone(2.0), x, fps, label="synthetic", options=PreviewOptions(size_px=SIZE))
    assert "frames/s" in caplog.text and result.render_fps > 0
    with av.open(str(out)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        v, a = c.streams.video[0], c.streams.audio[0]
        assert (v.width, v.height) == (SIZE, SIZE + strip_height(SIZE))
        assert float(v.average_rate) == pytest.approx(fps)
        assert float(v.duration * v.time_base) == pytest.approx(2.0, abs=1.0 / fps)
        assert a.sample_rate == SAMPLE_RATE and a.codec_context.name == "aac"
        assert float(a.duration * a.time_base) == pytest.approx(2.0, abs=0.07)  # AAC: 64 ms packets
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == num_frames
    shut, opened = frames[0][:SIZE], frames[int(1.2 * fps)][:SIZE]
    assert np.abs(_mouth(opened).astype(int) - _mouth(shut)).mean() > 8  # jawOpen shows in the video
    assert np.abs(_eye(opened, "Right").astype(int) - _eye(shut, "Right")).mean() < 3


def test_compare_doubles_the_width(tmp_path):
    x = _synthetic()
    one, two = tmp_path / "one.mp4", tmp_path / "two.mp4"
    opts = PreviewOptions(size_px=128)
    render_preview(one, _tone(2.0), x, FPS, options=opts)
    render_preview(two, _tone(2.0), x, FPS, compare=(x[::-1].copy(), FPS, "reversed"), options=opts)
    with av.open(str(one)) as a, av.open(str(two)) as b:
        va, vb = a.streams.video[0], b.streams.video[0]
        assert (vb.width, vb.height) == (2 * va.width, va.height)
        assert sum(1 for _ in b.decode(video=0)) == len(x)


def test_compare_at_another_fps_is_resampled(tmp_path):
    x30 = _synthetic(60)  # 2 s at 30 fps against 2 s at 25 fps
    out = tmp_path / "cmp.html"
    result = render_preview(out, _tone(2.0), _synthetic(), FPS, compare=(x30, 30.0, "thirty"))
    assert result.num_frames == 50 and out.stat().st_size > 10_000


# ---- errors ------------------------------------------------------------------------------

def test_duration_mismatch_says_what_to_do(tmp_path):
    with pytest.raises(InputError, match=r"differ by 1\.00 s.*cafetalk-rt animate"):
        render_preview(tmp_path / "x.mp4", _tone(3.0), _synthetic(), FPS)
    ok = render_preview(tmp_path / "y.html", _tone(2.0 + 0.5 * DURATION_TOL_S), _synthetic(), FPS)
    assert ok.duration_s == pytest.approx(2.0)


@pytest.mark.parametrize("name,message", [("out", "has no extension"), ("out.gif", "extension '.gif'")])
def test_bad_extension(tmp_path, name, message):
    with pytest.raises(InputError, match=message):
        render_preview(tmp_path / name, _tone(2.0), _synthetic(), FPS)


def test_never_overwrites_without_flag(tmp_path):
    out = tmp_path / "x.html"
    out.write_text("keep me")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        render_preview(out, _tone(2.0), _synthetic(), FPS)
    assert out.read_text() == "keep me"
    render_preview(out, _tone(2.0), _synthetic(), FPS, overwrite=True)
    assert out.read_text().startswith("<!doctype html>")


@pytest.fixture()
def files(tmp_path):
    anim, wav = tmp_path / "anim.npz", tmp_path / "speech.wav"
    save_animation(anim, _synthetic(), FPS)
    sf.write(wav, _tone(2.0), SAMPLE_RATE)
    return anim, wav


def test_cli_preview_writes_mp4_and_html(files, tmp_path, capsys):
    anim, wav = files
    other = tmp_path / "other.npz"
    save_animation(other, _synthetic()[::-1].copy(), FPS)
    mp4, page = tmp_path / "p.mp4", tmp_path / "p.html"
    assert main(["preview", str(anim), "--audio", str(wav), "-o", str(mp4), "--compare", str(other),
                 "--preview-size", "128"]) == 0
    assert re.search(r"50 frames at 25 fps .* rendered \d+ frames/s", capsys.readouterr().out)
    assert main(["preview", str(anim), "--audio", str(wav), "-o", str(page)]) == 0
    assert main(["preview", str(anim), "--audio", str(wav), "-o", str(page)]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err


def test_cli_names_the_extra_when_av_is_missing(files, tmp_path, monkeypatch, capsys):
    anim, wav = files
    monkeypatch.setitem(sys.modules, "av", None)  # import av → ImportError
    out = tmp_path / "p.mp4"
    assert main(["preview", str(anim), "--audio", str(wav), "-o", str(out)]) == 2
    assert 'pip install "cafetalk-rt[preview]"' in capsys.readouterr().err and not out.exists()


def test_animate_preview_fails_before_the_model(tmp_path, capsys):
    from cafetalk_rt.pipeline import DEMO_CLIP

    out = tmp_path / "a.npz"
    assert main(["animate", str(DEMO_CLIP), "-o", str(out), "--preview", str(tmp_path / "a.avi")]) == 2
    assert "OUT.mp4" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_animate_with_preview_shortcut(tmp_path, capsys):
    from cafetalk_rt.pipeline import DEMO_CLIP
    from cafetalk_rt.writers import load_animation

    out, mp4 = tmp_path / "a.npz", tmp_path / "a.mp4"
    assert main(["animate", str(DEMO_CLIP), "-o", str(out), "--preview", str(mp4),
                 "--num-inference-steps", "2", "--preview-size", "128"]) == 0
    x, fps = load_animation(out)
    with av.open(str(mp4)) as c:
        assert len(c.streams.audio) == 1
        assert sum(1 for _ in c.decode(video=0)) == len(x)
    assert "frames/s" in capsys.readouterr().out


# ---- the browser page -------------------------------------------------------------------

def _chromium() -> "str | None":
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


requires_chromium = pytest.mark.skipif(
    _chromium() is None, reason="Chromium is not installed (apt-get install -y chromium; .ci/run installs it)")


def _browse(page, tmp_path, fragment: str, *extra: str) -> "subprocess.CompletedProcess":
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio",
           f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--force-device-scale-factor=1",
           "--window-size=900,800", "--virtual-time-budget=3000", *extra, page.as_uri() + fragment]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@requires_chromium
def test_html_page_plays_in_headless_chromium(tmp_path):
    """Loads with no console errors; ``#t=`` seeks; the face at 1 s differs from 0 s where
    jawOpen moves, and matches the video renderer's face."""
    from PIL import Image

    page = tmp_path / "face.html"
    render_preview(page, _tone(2.0), _synthetic(), FPS, label="synthetic", options=PreviewOptions(size_px=SIZE))
    text = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # no network fetches
    dom = _browse(page, tmp_path, "#t=1.0", "--enable-logging=stderr", "--v=0", "--dump-dom")
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    assert 'data-ready="1"' in body and 'data-errors="0"' in body, body
    assert 'data-frame="25"' in body, body
    console = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln]
    assert not console, "console messages:\n" + "\n".join(console)
    fx, fy, fw, fh = map(int, re.search(r'data-face-rect="([\d,]+)"', body).group(1).split(","))
    assert (fw, fh) == (SIZE, SIZE)
    shots = []
    for t in ("0", "1.0"):
        png = tmp_path / f"t{t}.png"
        _browse(page, tmp_path, f"#t={t}", f"--screenshot={png}")
        shots.append(np.asarray(Image.open(png).convert("RGB"))[fy:fy + fh, fx:fx + fw])
    at0, at1 = shots
    assert _near(_mouth(at0), COLORS["mouth"]).sum() < 50  # shut at 0 s
    assert _near(_mouth(at1), COLORS["mouth"]).sum() > 600  # wide open at 1 s
    assert np.abs(_eye(at1, "Left").astype(int) - _eye(at0, "Left")).max() < 10  # eyes still
    # the canvas face is the video's face: same rig, same pose at frame 25 (anti-aliasing aside)
    from cafetalk_rt.preview.face import FaceRenderer

    video_face = FaceRenderer(SIZE).render(_synthetic()[25])
    assert np.abs(at1.astype(int) - video_face).mean() < 2.0
