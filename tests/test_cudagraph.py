"""The CUDA-graph backend (``--backend torch_cudagraph``, issue 5).

CPU part (normal suite): the pieces shared with the eager torch backend (branch layout, bucket
keys, static buffers), the error without CUDA, and the graph program itself run eagerly on its
static buffers (``capture=False``) on a random ``tiny`` model in float32, where it must equal the
torch backend bit for bit, and with a small random Whisper-shaped encoder for the fused kind.

GPU part (marked ``gpu``, skipped without CUDA): graph replay against the same program run eagerly
(``GRAPH_ATOL``) and against the eager fp32 torch backend (``FP16_ATOL``) on the shipped model and
real speech; replays with new noise, scales, emotion and intensity; bucket reuse (capture counts)
and the LRU bound; the pipeline path (windows) through ``Animator``; the eager fallbacks (DDPM,
AU spans); ``torch.compile`` (also ``slow``).
"""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cafetalk_rt.backends.torch_backend import TorchBackend, sample_arrays  # noqa: E402
from cafetalk_rt.control.au import AUCondition  # noqa: E402
from cafetalk_rt.diffusion.guidance import BranchPlan  # noqa: E402
from cafetalk_rt.backends.torch_cudagraph_backend import (  # noqa: E402
    FP16_ATOL, GRAPH_ATOL, CudaGraphBackend, GraphKey, StaticGraph, eager_reason, graph_key, input_specs)
from cafetalk_rt.errors import InputError  # noqa: E402
from cafetalk_rt.frames import num_frames  # noqa: E402
from cafetalk_rt.options import AnimateOptions  # noqa: E402
from cafetalk_rt.diffusion.noise import initial_noise  # noqa: E402
from cafetalk_rt.pipeline import DEFAULT_MODEL  # noqa: E402

CFG = dict(guidance_scale=1.5, audio_guidance_scale=1.3)
NO_CFG = dict(guidance_scale=1.0, audio_guidance_scale=1.0)


def _noise(seed, b, t):
    return np.random.default_rng(seed).standard_normal((b, t, 52), dtype=np.float32)


# -- CPU: shared helpers and bucket logic --------------------------------------------------------

def test_branch_plan_and_row_keeps():
    from cafetalk_rt.nn.guided import row_keeps

    for scales, fine in [((1.0, 1.0), False), ((1.3, 1.5), False), ((1.0, 1.0), True), ((1.0, 2.0), True)]:
        opts = AnimateOptions(audio_guidance_scale=scales[0], guidance_scale=scales[1])
        plan = BranchPlan.for_options(opts, fine=fine)
        n_base = 1 if scales == (1.0, 1.0) else 3
        assert plan.num_base == n_base and plan.num_blocks == (2 * n_base + 1 if fine else n_base)
    keeps = row_keeps(torch.zeros(2), BranchPlan(3))  # B = 2: block-major, as guidance.combine reads
    assert keeps[0].tolist() == [1, 1, 1, 1, 0, 0] and keeps[1].tolist() == [1, 1, 0, 0, 0, 0]
    assert keeps[2].tolist() == [0] * 6
    fine = row_keeps(torch.zeros(1), BranchPlan(3, fine=True))
    assert fine[2].tolist() == [0, 0, 0, 1, 0, 0, 0] and fine[0].tolist() == [1, 1, 0, 1, 1, 1, 0]
    with pytest.raises(ValueError, match="num_base"):
        BranchPlan(4)


def test_bucket_keys():
    k = graph_key("fused", 1, 500, 125, AnimateOptions(num_inference_steps=4, guidance_scale=1.5))
    assert k == GraphKey("fused", 1, 500, 125, 4, "ddim", True)
    # scales, emotion, intensity and seed are buffer values, not part of the key
    assert k == graph_key("fused", 1, 500, 125, AnimateOptions(num_inference_steps=4, guidance_scale=3.0,
                                                                audio_guidance_scale=1.2, emotion="sad", seed=9))
    assert not graph_key("fused", 1, 500, 125, AnimateOptions(num_inference_steps=4, **NO_CFG)).guided
    assert graph_key("sample", 1, 250, 125, AnimateOptions(sampler="dpmpp_2m")).sampler == "dpmpp_2m"
    assert graph_key("encode", 2, 300) == GraphKey("encode", 2, 300)
    with pytest.raises(ValueError, match="ddpm"):
        graph_key("sample", 1, 250, 125, AnimateOptions(sampler="ddpm"))
    assert eager_reason(AnimateOptions()) is None
    assert "ddpm" in eager_reason(AnimateOptions(sampler="ddpm"))
    assert "AU spans" in eager_reason(AnimateOptions(), fine=AUCondition(np.zeros((1, 2, 3)), np.ones((1, 2), bool)))
    k = graph_key("fused", 1, 80_000, 125, AnimateOptions(num_inference_steps=4))  # 5 s of 16 kHz audio in
    specs = input_specs(k, feature_dim=384, channels=52)
    assert specs["audio"][0] == (1, 80_000) and specs["noise"][0] == (1, 125, 52) and specs["guidance_scale"][0] == ()
    assert set(input_specs(GraphKey("encode", 1, 48_000), feature_dim=384, channels=52)) == {"audio"}
    assert set(input_specs(GraphKey("sample", 1, 250, 125), feature_dim=384, channels=52)) == {
        "features", "noise", "emotion", "intensity", "audio_guidance_scale", "guidance_scale"}


def test_static_buffers_take_new_values_and_check_shapes():
    inputs = {"x": torch.zeros(2, 3), "s": torch.zeros(()), "i": torch.zeros(2, dtype=torch.int64)}
    g = StaticGraph(lambda inp: inp["x"] * inp["s"] + inp["i"][:, None], inputs, capture=False)
    g.set_inputs({"x": np.ones((2, 3), np.float64), "s": 2.5, "i": np.array([1, 2])})
    assert g.replay().tolist() == [[3.5] * 3, [4.5] * 3]
    g.set_inputs({"s": -1.0})
    assert g.replay().tolist() == [[0.0] * 3, [1.0] * 3]
    with pytest.raises(ValueError, match="shape"):
        g.set_inputs({"x": np.ones((3, 3))})


def test_needs_cuda_and_names_the_torch_backend():
    from cafetalk_rt.backends import BACKENDS, load_backend

    assert "torch_cudagraph" in BACKENDS
    with pytest.raises(InputError, match="--backend torch"):
        load_backend("torch_cudagraph", DEFAULT_MODEL, device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="--backend torch"):
            load_backend("torch_cudagraph", DEFAULT_MODEL, device="cuda")
    with pytest.raises(InputError, match="float16"):
        CudaGraphBackend(DEFAULT_MODEL, device="cpu", capture=False, dtype=torch.bfloat16)


def test_import_stays_torch_free():
    code = "import sys, cafetalk_rt, cafetalk_rt.backends; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from export.testing import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("cudagraph") / "tiny.safetensors")


def test_graph_program_equals_torch_backend_and_reuses_buckets(tiny_checkpoint):
    """The program a graph captures, run eagerly on its buffers (fp32): bit-identical to the torch
    backend's, for new inputs on a reused bucket too; LRU bound and capture count."""
    from cafetalk_rt.nn.checkpoint import load_denoiser

    be = CudaGraphBackend(tiny_checkpoint, device="cpu", capture=False, dtype=torch.float32, max_graphs=2)
    ref = load_denoiser(tiny_checkpoint)
    feats = np.random.default_rng(0).standard_normal((2, 24, 384), dtype=np.float32)
    calls = [(AnimateOptions(num_inference_steps=2, **CFG), 0, 5, 3),
             (AnimateOptions(num_inference_steps=2, guidance_scale=2.5, audio_guidance_scale=1.0), 1, 2, 1),
             (AnimateOptions(num_inference_steps=2, sampler="dpmpp_2m", **NO_CFG), 2, 0, 2)]
    for opts, seed, emotion, intensity in calls:
        x = _noise(seed, 2, 12)
        got = be.sample(feats, x, emotion=emotion, intensity=intensity, options=opts)
        want = sample_arrays(ref, be.schedule, feats, x, emotion=emotion, intensity=intensity, options=opts)
        np.testing.assert_array_equal(got, want)
    assert be.captures == 2  # the first two calls share a bucket (scales are buffer values)
    be.sample(feats, _noise(3, 2, 12), emotion=0, intensity=1, options=AnimateOptions(num_inference_steps=1))
    assert be.captures == 3 and len(be._graphs) == 2  # LRU: the oldest bucket was released
    assert GraphKey("sample", 2, 24, 12, 2, "ddim", True) not in be._graphs and be.last_key in be._graphs


def test_fused_program_equals_encode_then_sample(tiny_checkpoint):
    """encode → sample (two programs) and the fused program agree (fp32, small random encoder)."""
    from cafetalk_rt.nn.speech_encoder import WhisperEncoderConfig, WhisperEncoderWeights, WhisperSpeechEncoder

    be = CudaGraphBackend(tiny_checkpoint, device="cpu", capture=False, dtype=torch.float32)
    torch.manual_seed(0)
    cfg = WhisperEncoderConfig(num_mel_bins=80, d_model=384, encoder_layers=1, encoder_attention_heads=6,
                               encoder_ffn_dim=384, max_source_positions=1500)
    be.encoder = WhisperSpeechEncoder(WhisperEncoderWeights(cfg))  # replaces the lazily loaded Whisper
    audio = np.sin(np.arange(8000) * 0.05).astype(np.float32) * np.linspace(0, 1, 8000, dtype=np.float32)
    t = num_frames(8000, be.config.fps)
    feats = be.encode(audio)
    np.testing.assert_allclose(feats, be.eager_encode(audio), atol=1e-5)
    opts = AnimateOptions(num_inference_steps=2, **CFG)
    x = _noise(0, 1, t)
    fused = be.animate_batch(audio[None], x, emotion=1, intensity=2, options=opts)
    two = be.sample(feats[None], x, emotion=1, intensity=2, options=opts)
    np.testing.assert_allclose(fused, two, atol=1e-5)
    assert {k.kind for k in be._graphs} == {"encode", "sample", "fused"}


# -- GPU ---------------------------------------------------------------------------------------

def _need_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device (torch.cuda.is_available() is False): the CUDA-graph path needs one")


@pytest.fixture(scope="module")
def gpu_backends():
    _need_cuda()
    return CudaGraphBackend(DEFAULT_MODEL), TorchBackend(DEFAULT_MODEL, device="cuda")


@pytest.fixture(scope="module")
def speech_5s(demo_audio):
    return np.tile(demo_audio, 2)[:80_000]  # the real clip (3.1 s) twice, cut to 5 s


def _reference(ref, audio, x, opts, emotion=5, intensity=3):
    return ref.sample(ref.encode(audio)[None], x, emotion=emotion, intensity=intensity, options=opts)


@pytest.mark.gpu
@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m"])
@pytest.mark.parametrize("k", [1, 4, 10])
@pytest.mark.parametrize("scales", [CFG, NO_CFG], ids=["cfg", "nocfg"])
def test_fused_graph_matches_eager(gpu_backends, speech_5s, sampler, k, scales):
    be, ref = gpu_backends
    opts = AnimateOptions(num_inference_steps=k, sampler=sampler, **scales)
    x, _ = initial_noise(0, num_frames(len(speech_5s), 25), k, False)
    got = be.animate_batch(speech_5s[None], x, emotion=5, intensity=3, options=opts)
    same_program = be.animate_batch(speech_5s[None], x, emotion=5, intensity=3, options=opts, graph=False)
    assert np.abs(got - same_program).max() <= GRAPH_ATOL
    assert np.abs(got - _reference(ref, speech_5s, x, opts)).max() <= FP16_ATOL


@pytest.mark.gpu
def test_replay_with_new_inputs_gives_their_eager_result(gpu_backends, speech_5s):
    be, ref = gpu_backends
    t = num_frames(len(speech_5s), 25)
    first = AnimateOptions(num_inference_steps=4, **CFG)
    a = be.animate_batch(speech_5s[None], _noise(0, 1, t), emotion=5, intensity=3, options=first)
    captures = be.captures
    second = AnimateOptions(num_inference_steps=4, guidance_scale=2.5, audio_guidance_scale=1.1)
    x = _noise(1, 1, t)
    b = be.animate_batch(speech_5s[None], x, emotion=2, intensity=1, options=second)
    assert be.captures == captures  # replayed, not captured again
    assert np.abs(a - b).max() > FP16_ATOL  # nothing of the first call was baked in
    eager = be.animate_batch(speech_5s[None], x, emotion=2, intensity=1, options=second, graph=False)
    assert np.abs(b - eager).max() <= GRAPH_ATOL
    assert np.abs(b - _reference(ref, speech_5s, x, second, emotion=2, intensity=1)).max() <= FP16_ATOL


@pytest.mark.gpu
def test_buckets_are_reused_and_bounded(speech_5s):
    _need_cuda()
    be = CudaGraphBackend(DEFAULT_MODEL, max_graphs=2)
    clips = {"a": speech_5s[None], "b": speech_5s[None, :48_000], "c": speech_5s[None, :32_000]}

    def call(name, seed=0):
        t = num_frames(clips[name].shape[1], 25)
        return be.animate_batch(clips[name], _noise(seed, 1, t), emotion=0, intensity=2,
                                options=AnimateOptions(num_inference_steps=2))

    call("a"), call("b"), call("a", seed=1)
    assert be.captures == 2
    call("c")  # evicts "b", the least recently used
    assert be.captures == 3 and len(be._graphs) == 2
    call("a")
    assert be.captures == 3
    call("b")
    assert be.captures == 4


@pytest.mark.gpu
def test_sample_graph_batches_and_epsilon_models(tmp_path):
    """The ``sample`` kind (what the pipeline calls), B = 3 rows, an ε-predicting model."""
    _need_cuda()
    from export.testing import write_tiny_checkpoint

    ckpt = write_tiny_checkpoint(tmp_path / "eps.safetensors", prediction_type="epsilon")
    be, ref = CudaGraphBackend(ckpt), TorchBackend(ckpt, device="cuda")
    feats = np.random.default_rng(0).standard_normal((3, 100, 384), dtype=np.float32)
    x = _noise(0, 3, 50)
    for opts in [AnimateOptions(num_inference_steps=4, **CFG),
                 AnimateOptions(num_inference_steps=4, sampler="dpmpp_2m")]:
        kw = dict(emotion=4, intensity=2, options=opts)
        got = be.sample(feats, x, **kw)
        assert np.abs(got - be.sample(feats, x, **kw, graph=False)).max() <= GRAPH_ATOL
        # The untrained tiny model's x0 reaches |60| (ε → x0 multiplies by 1/√ᾱ_t), where one fp16
        # ulp is 0.03: FP16_ATOL is in blendshape units ([0, 1]), so scale it by the output's range.
        want = ref.sample(feats, x, **kw)
        assert np.abs(got - want).max() <= FP16_ATOL * max(1.0, float(np.abs(want).max()))


@pytest.mark.gpu
def test_animator_with_windows_matches_the_torch_backend(demo_audio):
    """``Animator(backend="torch_cudagraph")``: 12.4 s of speech in 10 s windows (encode and sample
    graphs per window group) against the eager torch backend on the same GPU."""
    _need_cuda()
    from cafetalk_rt.pipeline import Animator

    audio = np.tile(demo_audio, 4)
    opts = AnimateOptions(num_inference_steps=4)
    got = Animator(backend="torch_cudagraph", device="cuda").animate(audio, opts).blendshapes
    want = Animator(device="cuda").animate(audio, opts).blendshapes
    assert got.shape == want.shape and np.abs(got - want).max() <= FP16_ATOL


@pytest.mark.gpu
def test_ddpm_runs_eagerly(gpu_backends, speech_5s, caplog):
    be, _ = gpu_backends
    feats = be.encode(speech_5s)[None]
    t = num_frames(len(speech_5s), 25)
    opts = AnimateOptions(num_inference_steps=3, sampler="ddpm")
    x, steps = initial_noise(0, t, 3, True)
    captures = be.captures
    with caplog.at_level("WARNING"):
        got = be.sample(feats, x, emotion=1, intensity=2, options=opts, step_noise=steps)
    assert be.captures == captures and "ddpm" in caplog.text
    eager = be.eager_sample(feats, x, emotion=1, intensity=2, options=opts, step_noise=steps)
    np.testing.assert_array_equal(got, eager)


@pytest.mark.gpu
def test_au_spans_run_eagerly(gpu_backends, speech_5s, tmp_path):
    be, _ = gpu_backends
    from cafetalk_rt.control.au import parse_au_spans, spans_to_condition

    testing = pytest.importorskip("export.testing")
    if not hasattr(testing, "write_adapter_checkpoint"):
        pytest.skip("export.testing.write_adapter_checkpoint (a stage-2 test checkpoint) is not in this tree")
    ckpt = testing.write_adapter_checkpoint(tmp_path / "au.safetensors")
    feats = be.encode(speech_5s)[None]
    t = num_frames(len(speech_5s), 25)
    au_be, au_ref = CudaGraphBackend(ckpt), TorchBackend(ckpt, device="cuda")
    au, mask = spans_to_condition(parse_au_spans("AU12=0.8@1.0-3.0"), t, 25, len(speech_5s) / 16_000)
    fine = AUCondition(au[None], mask[None])
    opts = AnimateOptions(num_inference_steps=4)
    x, _ = initial_noise(0, t, 4, False)
    got = au_be.sample(feats, x, emotion=0, intensity=2, options=opts, fine=fine)
    want = au_ref.sample(feats, x, emotion=0, intensity=2, options=opts, fine=fine)
    assert au_be.captures == 0 and np.abs(got - want).max() <= FP16_ATOL


@pytest.mark.gpu
@pytest.mark.slow
def test_torch_compile_inside_the_graph(speech_5s):
    _need_cuda()
    be = CudaGraphBackend(DEFAULT_MODEL, compile=True)
    opts = AnimateOptions(num_inference_steps=4)
    x, _ = initial_noise(0, num_frames(len(speech_5s), 25), 4, False)
    got = be.animate_batch(speech_5s[None], x, emotion=5, intensity=3, options=opts)
    eager = be.eager_sample(be.eager_encode(speech_5s)[None], x, emotion=5, intensity=3, options=opts)
    assert np.abs(got - eager).max() <= FP16_ATOL


def test_streaming_buckets_pad_and_equal_the_torch_backend():
    """The live-streaming hop on static buffers (capture off, float32): 3 streams run in the
    4-stream bucket and equal the eager torch backend's rows; the bucket is built once."""
    from cafetalk_rt.backends.streaming_contract import StreamingLayout
    from export.streaming_export import example_feeds

    layout = StreamingLayout(lookahead_frames=2)
    cg = CudaGraphBackend(DEFAULT_MODEL, device="cpu", capture=False, dtype=torch.float32)
    run, ref = cg.streaming_step(layout), TorchBackend(DEFAULT_MODEL).streaming_step(layout)
    for seed in (0, 1):
        feeds = example_feeds(layout, batch=3, seed=seed)
        got, want = run(feeds), ref(feeds)
        for name in want:
            assert got[name].shape == want[name].shape
            assert np.abs(got[name] - want[name]).max() < 1e-4, name
    assert cg.captures == 1


@pytest.mark.gpu
def test_streaming_graph_replay_matches_eager_fp32_on_gpu():
    from cafetalk_rt.backends.streaming_contract import DEFAULT_LAYOUT
    from export.streaming_export import example_feeds

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    run = CudaGraphBackend(DEFAULT_MODEL).streaming_step(DEFAULT_LAYOUT)
    ref = TorchBackend(DEFAULT_MODEL).streaming_step(DEFAULT_LAYOUT)
    for b in (1, 3, 8):
        feeds = example_feeds(DEFAULT_LAYOUT, batch=b, seed=b)
        assert np.abs(run(feeds)["frames"] - ref(feeds)["frames"]).max() < FP16_ATOL
