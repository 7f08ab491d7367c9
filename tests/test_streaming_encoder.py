"""The live stream's speech-encoder adapter (``nn.streaming_encoder``): it starts as the frozen
encoder, it survives a checkpoint round trip, the streaming hop really uses it (offline does not),
and its distillation targets line up with the stream's windows in time."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cafetalk_rt.backends.streaming_contract import SAMPLES_PER_FRAME, StreamingLayout  # noqa: E402
from cafetalk_rt.nn.streaming_encoder import StreamingEncoderAdapter, StreamingEncoderConfig  # noqa: E402


@pytest.fixture(scope="module")
def encoder(torch_animator):
    return torch_animator.backend.encoder


def _perturbed(config=StreamingEncoderConfig(rank=4)) -> StreamingEncoderAdapter:
    adapter = StreamingEncoderAdapter(config)
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_(0, 0.05, generator=torch.Generator().manual_seed(p.numel()))
    return adapter.eval()


def test_untrained_adapter_is_the_frozen_encoder_and_a_trained_one_moves_it(encoder, demo_audio):
    from cafetalk_rt.nn.log_mel import LogMelSpectrogram

    mel = LogMelSpectrogram()(torch.from_numpy(demo_audio[None, :20_000]))
    with torch.inference_mode():
        frozen = encoder(mel)
        untrained = encoder(mel, None, StreamingEncoderAdapter(StreamingEncoderConfig()).eval())
        moved = encoder(mel, None, _perturbed())
    assert frozen.shape == untrained.shape == moved.shape == (1, 63, 384)
    assert torch.equal(frozen, untrained)
    assert (moved - frozen).abs().mean() > 0.05


def test_checkpoint_round_trip_keeps_the_adapter(torch_animator, tmp_path):
    from cafetalk_rt.nn.checkpoint import load_denoiser, save_denoiser

    model = load_denoiser(torch_animator.model_path)
    model.streaming_encoder = _perturbed(StreamingEncoderConfig(rank=4, alpha=8.0))
    path = save_denoiser(tmp_path / "m.safetensors", model)
    loaded = load_denoiser(path)
    assert loaded.streaming_encoder.config == StreamingEncoderConfig(rank=4, alpha=8.0)
    for (k, a), (_, b) in zip(model.streaming_encoder.state_dict().items(), loaded.streaming_encoder.state_dict().items()):
        assert torch.equal(a, b), k


def test_streaming_hop_uses_the_adapter(torch_animator, demo_audio):
    from cafetalk_rt.nn.checkpoint import load_denoiser
    from cafetalk_rt.nn.streaming import StreamingStep

    backend, layout = torch_animator.backend, StreamingLayout()
    plain = load_denoiser(torch_animator.model_path)
    plain.streaming_encoder = None
    adapted = load_denoiser(torch_animator.model_path)
    adapted.streaming_encoder = _perturbed()
    audio = torch.from_numpy(demo_audio[None, 16_000 : 16_000 + layout.chunk_samples])
    state = [torch.zeros(1, *s) for s in layout.state_shapes().values()]
    args = (torch.ones(1), torch.zeros(1, layout.window_frames, 52), torch.zeros(1, 2, dtype=torch.int64),
            torch.ones(1, 2), torch.zeros(1), torch.ones(1))
    with torch.inference_mode():
        outs = [StreamingStep(backend.encoder, m, backend.schedule, layout)(audio, *state, *args) for m in (plain, adapted)]
    assert not torch.allclose(outs[0][2], outs[1][2], atol=1e-3)  # the kept features differ


def test_distillation_windows_line_up_with_the_teacher(tmp_path):
    """The window's fresh frames sit at the teacher's frame indices: encode a clip whose audio is a
    ramp of sample indices, so the target index equals the position of the audio it came from."""
    from train.stream_encoder import HopWindows

    hw = HopWindows.__new__(HopWindows)
    hw.h = 2
    clip = np.arange(40 * SAMPLES_PER_FRAME, dtype=np.float32) + 1  # 40 frames, value = sample index + 1
    teacher = (np.arange(80, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32))  # 50 Hz index
    hw.items = [(clip, teacher)]
    e, la = 5, 4
    audio, target, mask = hw.batch(np.random.default_rng(0), 64, e, la)
    assert audio.shape == (64, (e + 2 + la) * SAMPLES_PER_FRAME) and target.shape == (64, 2 * (2 + la), 3)
    for a, t, m in zip(audio, target, mask):
        fresh = a[e * SAMPLES_PER_FRAME:].reshape(2 * (2 + la), SAMPLES_PER_FRAME // 2)  # 50 Hz frames
        inside = fresh[:, 0] > 0
        assert np.array_equal(inside, m)
        assert np.array_equal((fresh[inside, 0] - 1) // (SAMPLES_PER_FRAME // 2), t[inside, 0])
    assert mask.any() and not mask.all()
