"""The fine-tune data for short right context (``train.streaming``) is exactly what a live stream
feeds its denoiser: the cached per-hop features rebuild the streaming step's own window features."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cafetalk_rt.backends.streaming_contract import StreamingLayout  # noqa: E402
from train.streaming import stream_windows, window_features  # noqa: E402


def test_window_features_equal_the_streaming_steps(torch_animator, demo_audio):
    from cafetalk_rt.nn.streaming import StreamingStep

    layout = StreamingLayout(lookahead_frames=2, past_frames=5)
    backend = torch_animator.backend
    step = StreamingStep(backend.encoder, backend.model, backend.schedule, layout)
    seen = []
    step._encode = lambda audio, f=step._encode: seen.append(f(audio)) or seen[-1]  # what each hop encodes
    audio = demo_audio[:24_000]
    state = {k: torch.zeros(1, *v) for k, v in layout.state_shapes().items()}
    states = []
    for n, w in enumerate(stream_windows(audio, layout)):
        chunk = torch.from_numpy(w[None, -layout.chunk_samples:])
        states.append(state["state_features"][0].numpy().copy())
        with torch.inference_mode():
            out = step(chunk, state["state_audio"], state["state_features"], state["state_frames"],
                       torch.tensor([float(n == 0)]), torch.zeros(1, layout.window_frames, 52),
                       torch.zeros(1, 2, dtype=torch.int64), torch.ones(1, 2), torch.zeros(1), torch.ones(1))
        state = dict(zip(["state_audio", "state_features", "state_frames"], out[1:]))
    with torch.inference_mode():
        fresh = np.stack([step._encode(torch.from_numpy(w[None]))[0, 2 * layout.encoder_context_frames:].numpy()
                          for w in stream_windows(audio, layout)])
    first = -(-(layout.past_frames + layout.lookahead_frames) // layout.hop_frames)
    assert len(states) > first + 5
    for n in range(first, len(states)):
        want = window_features(fresh, n, layout)
        assert np.abs(want[: 2 * layout.past_frames] - states[n]).max() < 1e-4, n
        assert np.abs(want[2 * layout.past_frames :] - seen[n][0, 2 * layout.encoder_context_frames:].numpy()).max() < 1e-4


def test_closure_rate_counts_lips_that_close_on_p_b_m():
    """The p/b/m closure metric: a mouth that shuts on the bilabial scores 1, one held open 0,
    and phones without a vowel nearby are not counted."""
    from cafetalk_rt.blendshapes import INDEX
    from train.evaluate import closure_rate

    fps = 25
    phones, starts, ends = ["_", "a", "m", "ˈa", "_", "b"], [0, .2, .4, .5, .8, 2.0], [.2, .4, .5, .8, 2.0, 2.1]
    closing = np.zeros((60, 52), np.float32)
    closing[5:25, INDEX["jawOpen"]] = 0.6
    closing[10:13, INDEX["jawOpen"]] = 0.05  # shut during "m" (0.4–0.5 s = frames 10–12)
    assert closure_rate(closing, fps, phones, starts, ends) == (1, 1)  # the lone "b" has no vowel nearby
    open_mouth = closing.copy()
    open_mouth[10:13, INDEX["jawOpen"]] = 0.5
    assert closure_rate(open_mouth, fps, phones, starts, ends) == (0, 1)
    lips_pressed = open_mouth.copy()
    lips_pressed[10:13, INDEX["mouthClose"]] = 0.45  # jaw open, lips together: closed
    assert closure_rate(lips_pressed, fps, phones, starts, ends) == (1, 1)
