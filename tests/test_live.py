"""Live streams (:mod:`cafetalk_rt.longform.live`) keep what they promise: the offline frame
count at 25 and 30 fps, frames that hear no audio beyond their look-ahead, the same frames for
any chunking and the same seed, a mouth that follows the speech, no seams at hop boundaries,
smooth mid-stream emotion changes, and clear errors."""
import json

import numpy as np
import pytest

from cafetalk_rt import AnimateOptions
from cafetalk_rt.blendshapes import INDEX, MOUTH_IDX
from cafetalk_rt.errors import AudioInputError, InputError
from cafetalk_rt.longform.live import LiveOptions, LiveStream

OPT = AnimateOptions(seed=3, num_inference_steps=2)


def _stream(animator, audio, *, chunk=1280, options=OPT, live=None):
    s = LiveStream(animator, options, live)
    out = []
    for i in range(0, audio.size, chunk):
        out.append(s.push(audio[i : i + chunk]))
    out.append(s.flush())
    return np.concatenate(out)


@pytest.fixture(scope="module")
def clip(demo_audio):
    return demo_audio[:40_000]  # 2.5 s of real speech


@pytest.mark.parametrize("fps", [25, 30])
def test_frame_count_equals_offline(animator, clip, fps):
    opts = AnimateOptions(seed=3, num_inference_steps=2, fps=fps)
    out = _stream(animator, clip, options=opts)
    assert out.shape == animator.animate(clip, opts).blendshapes.shape == (round(clip.size / 16_000 * fps), 52)
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0


def test_same_frames_for_any_chunking_and_the_same_seed(animator, clip):
    a = _stream(animator, clip, chunk=1280)
    assert np.array_equal(a, _stream(animator, clip, chunk=3_001))
    assert np.array_equal(a, _stream(animator, clip, chunk=clip.size))
    assert not np.array_equal(a, _stream(animator, clip, options=AnimateOptions(seed=4, num_inference_steps=2)))


@pytest.mark.parametrize("lookahead_s", [0.08, 0.16])
def test_frames_hear_no_audio_beyond_their_hop_and_look_ahead(animator, clip, lookahead_s):
    """Replace the audio after 1.6 s by other speech: every frame emitted by a hop whose audio
    (its frames plus the look-ahead) ended before the change is bit-identical; later ones change."""
    other = clip.copy()
    cut = 25_600  # 1.6 s = frame 40
    other[cut:] = clip[: clip.size - cut][::-1]
    live = LiveOptions(lookahead_s=lookahead_s)
    a, b = _stream(animator, clip, live=live), _stream(animator, other, live=live)
    la = round(lookahead_s * 25)
    safe = (40 - la) // 2 * 2  # hops of 2 frames: frames [f0, f0 + 2) heard audio up to frame f0 + 2 + la
    assert np.array_equal(a[:safe], b[:safe])
    assert not np.array_equal(a[safe + 4 :], b[safe + 4 :])  # the new audio does reach later frames


def test_mouth_follows_the_speech_like_offline(animator, demo_audio):
    live = _stream(animator, demo_audio)
    offline = animator.animate(demo_audio, OPT).blendshapes
    jaw = INDEX["jawOpen"]
    assert np.corrcoef(live[:, jaw], offline[:, jaw])[0, 1] > 0.75
    assert np.abs(live[:, MOUTH_IDX] - offline[:, MOUTH_IDX]).mean() < 0.03
    assert live[:, jaw].std() > 0.5 * offline[:, jaw].std()  # it moves as much, not a damped copy


def test_no_seams_at_hop_boundaries(animator, demo_audio):
    """Frame-to-frame steps across hop boundaries are no larger than inside hops, or offline's."""
    live = _stream(animator, demo_audio)[:, MOUTH_IDX]
    offline = animator.animate(demo_audio, OPT).blendshapes[:, MOUTH_IDX]
    steps = np.abs(np.diff(live, axis=0)).mean(axis=1)  # (T − 1,) step from frame i to i + 1
    across, inside = steps[1::2], steps[0::2]  # hops of 2 frames: frame 2k+1 → 2k+2 crosses a boundary
    assert across.mean() < 1.5 * inside.mean() + 1e-3
    assert steps.mean() < 1.5 * np.abs(np.diff(offline, axis=0)).mean() + 1e-3


def test_emotion_changes_mid_stream_smoothly(animator, clip):
    """set_emotion at 1.2 s: frames already returned stay as they were (final), frames before the
    change time may anticipate it by at most a look-ahead and barely, and the smile then rises
    over the transition instead of jumping."""
    neutral = _stream(animator, clip)
    s = LiveStream(animator, OPT)
    out = [s.push(clip[i : i + 1280]) for i in range(0, 19_200, 1280)]  # up to 1.2 s
    before = sum(len(o) for o in out)
    s.set_emotion("happy", 3)
    out += [s.push(clip[i : i + 1280]) for i in range(19_200, clip.size, 1280)] + [s.flush()]
    happy = np.concatenate(out)
    change = 30  # frame of 1.2 s
    assert 20 <= before < change and np.array_equal(neutral[:before], happy[:before])
    assert np.abs(neutral[before:change] - happy[before:change]).max() < 0.1
    smile = [INDEX["mouthSmileLeft"], INDEX["mouthSmileRight"]]
    assert happy[change + 10 :, smile].mean() > neutral[change + 10 :, smile].mean() + 0.1
    # the emotion's own contribution (happy − neutral smile) rises over the ~0.3 s transition,
    # not in one jump (the speech moves the smile in both streams alike)
    ramp = (happy[:, smile] - neutral[:, smile]).mean(axis=1)[change - 1 : change + 12]
    rise = ramp[-3:].mean() - ramp[0]
    assert rise > 0.2 and np.abs(np.diff(ramp)).max() < 0.5 * rise
    assert ramp[1] - ramp[0] < 0.2 * rise  # at the change itself it has barely begun
    assert np.argmax(ramp > ramp[0] + 0.9 * rise) >= 5  # 90 % no sooner than 0.16 s after it


def test_batched_streams_equal_streams_alone(animator, demo_audio):
    """Three streams (other clips, seeds, emotions) advanced by one LiveBatch, one joining late and
    one leaving early: each gets the frames it gets alone, within float rounding of the batch."""
    from cafetalk_rt.longform.live import LiveBatch

    clips = {"a": demo_audio[:32_000], "b": demo_audio[8_000:40_000], "c": demo_audio[16_000:40_000]}
    opts = {"a": OPT, "b": AnimateOptions(seed=9, num_inference_steps=2, emotion="happy", intensity=3),
            "c": AnimateOptions(seed=5, num_inference_steps=2, emotion="sad")}
    alone = {k: _stream(animator, clips[k], options=opts[k]) for k in clips}
    batch, got = LiveBatch(animator), {k: [] for k in clips}
    batch.open("a", opts["a"]), batch.open("b", opts["b"])
    for i in range(0, 32_000, 1280):
        if i == 6_400:
            batch.open("c", opts["c"])  # joins 0.4 s later: its audio starts then
        chunks = {k: clips[k][i - (6_400 if k == "c" else 0) :][:1280] for k in batch.streams}
        for k, frames in batch.push({k: c for k, c in chunks.items() if c.size}).items():
            got[k].append(frames)
        if i == 25_600:
            got["b"].append(batch.close("b"))  # leaves early: its clip is cut at 1.68 s
    for k in ("a", "c"):
        got[k].append(batch.close(k))
    got = {k: np.concatenate(v) for k, v in got.items()}
    alone["b"] = _stream(animator, clips["b"][:26_880], options=opts["b"])
    alone["c"] = _stream(animator, clips["c"][: 32_000 - 6_400], options=opts["c"])
    for k in clips:
        assert got[k].shape == alone[k].shape
        assert np.abs(got[k] - alone[k]).max() < 1e-4, k


def test_errors_say_what_to_do(animator, clip):
    with pytest.raises(InputError, match="offline-only"):
        LiveStream(animator, AnimateOptions(au_spans="AU12=1@0.1-0.5"))
    with pytest.raises(InputError, match="DDIM"):
        LiveStream(animator, AnimateOptions(sampler="ddpm"))
    with pytest.raises(InputError, match="audio_guidance_scale"):
        LiveStream(animator, AnimateOptions(num_inference_steps=2, audio_guidance_scale=2.0))
    with pytest.raises(InputError, match="lookahead_s"):
        LiveOptions(lookahead_s=-0.1)
    with pytest.raises(InputError, match="whole number"):
        LiveStream(animator, OPT, LiveOptions(hop_s=0.05))
    s = LiveStream(animator, OPT)
    with pytest.raises(AudioInputError, match="non-finite"):
        s.push(np.full(100, np.nan, np.float32))
    with pytest.raises(AudioInputError, match="silent"):
        s.flush()
    with pytest.raises(InputError, match="flush"):
        s.push(clip[:100])


def test_cli_stream_writes_frames_and_a_report(tmp_path):
    from cafetalk_rt.cli import main
    from cafetalk_rt.model_files import DEMO_CLIP
    from cafetalk_rt.writers import load_animation

    out, report = tmp_path / "live.npz", tmp_path / "report.json"
    assert main(["stream", str(DEMO_CLIP), "-o", str(out), "--report", str(report), "--lookahead-ms", "80"]) == 0
    r = json.loads(report.read_text())
    assert load_animation(out)[0].shape == (r["frames"], 52) == (77, 52)
    assert r["lookahead_ms"] == 80 and r["hop_ms"] == 80 and r["rtf"] > 0
    assert 0 < r["latency_ms_p50"] <= r["latency_ms_p95"] <= r["latency_ms_max"]


def test_onnxruntime_stream_equals_the_torch_module(animator, torch_animator, demo_audio):
    """The shipped streaming graph on ONNX Runtime and the torch StreamingStep it was exported
    from give the same stream (an emotion change included) within 1e-4."""
    clip = demo_audio[:30_000]

    def run(a):
        s = LiveStream(a, OPT)
        out = [s.push(clip[i : i + 4000]) for i in range(0, 16_000, 4000)]
        s.set_emotion("angry", 3)
        out += [s.push(clip[i : i + 4000]) for i in range(16_000, clip.size, 4000)] + [s.flush()]
        return np.concatenate(out)

    assert np.abs(run(animator) - run(torch_animator)).max() < 1e-4


def test_streaming_graph_is_flat_and_documents_its_state(animator):
    """One call per hop, no control flow, and the state layout is in the graph's metadata."""
    import onnx

    from cafetalk_rt.backends.streaming_contract import DEFAULT_LAYOUT, KEY_STREAMING, StreamingLayout, graph_io

    runner = animator.backend.streaming_step(DEFAULT_LAYOUT)
    assert StreamingLayout.from_metadata(runner.metadata[KEY_STREAMING]) == DEFAULT_LAYOUT
    graph = onnx.load(str(runner.path), load_external_data=False).graph
    assert not {n.op_type for n in graph.node} & {"Loop", "If", "Scan"}
    inputs, outputs = graph_io(DEFAULT_LAYOUT)
    assert [i.name for i in graph.input] == [t.name for t in inputs]
    assert [o.name for o in graph.output] == [t.name for t in outputs]
    for t in outputs[1:]:  # every next_state_* output feeds back into its state_* input
        assert t.name.removeprefix("next_") in [i.name for i in inputs]


def test_missing_streaming_graph_names_the_export_command(animator):
    from cafetalk_rt.errors import MissingDependencyError

    with pytest.raises(MissingDependencyError, match="cafetalk-rt export streaming .*--past-ms 480"):
        LiveStream(animator, OPT, LiveOptions(past_s=0.48))
