"""The I/O contract of the stateful live-streaming graph ``streaming_step`` (pure data, no torch).

One call per hop and stream row: (the hop's new audio, the state, the conditions, the window's
noise) → (the hop's final frames, the next state). The graph has fixed shapes apart from the batch
axis (one graph per :class:`StreamingLayout`), no Loop/If/Scan, and carries its layout in the
metadata key ``cafetalk.streaming`` (:meth:`StreamingLayout.to_metadata`). Audio2Face-3D's
``input_latents``/``output_latents`` is the precedent: the caller owns the state and feeds each
``next_state_*`` output back as the matching ``state_*`` input on the stream's next call.

Timing (25 fps, 640 samples a frame, H = ``hop_frames``, L = ``lookahead_frames``): call ``n``
(0-based) takes samples ``[n·H·640, (n+1)·H·640)`` of the stream and returns frames
``[n·H − L, n·H − L + H)``: each frame is final L frames (``lookahead_s``) after its own end.
Frames with a negative index (the first ⌈L / H⌉ calls) belong to the silence before the stream:
drop them. At the end, pad the last chunk with zeros and keep calling with zero chunks until frame
``round(duration · 25) − 1`` is out; drop what lies past it.

The state of one stream (all float32; the caller passes zeros with ``start = 1`` on a stream's
first call, and the graph puts the silence state there):

====================  ===================  ==========================================================
``state_audio``       (B, (E + L)·640)      the newest audio samples the speech encoder hears again
``state_features``    (B, 2P, 384)          speech features (50 Hz) of the P emitted frames
``state_frames``      (B, P, 52)            the P newest emitted frames, ARKit units in [0, 1]
====================  ===================  ==========================================================

with P = ``past_frames`` and E = ``encoder_context_frames``. Each hop the speech encoder hears
``E + H + L`` frames of audio; the features of the emitted frames are kept (computed once, when
their frame was new), and the denoiser window is the P past frames, the H new ones and the L
look-ahead frames (inpainting holds the past ones fixed).

Conditions: ``emotion`` (B, 2) int64 and ``intensity`` (B, 2) float32 are two coarse conditions
(old, new) and ``condition_mix`` (B,) float32 the weight of the new one: the model's emotion
embedding is their blend, which makes a mid-stream change smooth (the host ramps the weight,
``cafetalk_rt.longform.live``). ``guidance_scale`` (B,) is the emotion CFG scale s_c; the
audio scale is 1 (two branches per row, :class:`~cafetalk_rt.diffusion.guidance.BranchPlan` (2)).
``noise`` (B, P + H + L, 52) is x_T of the window's frames ``[n·H − L − P, n·H + H)``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from cafetalk_rt.backends.contract import AUDIO_FEATURE_DIM, TensorSpec, _t
from cafetalk_rt.blendshapes import NUM_BLENDSHAPES
from cafetalk_rt.errors import InputError

KIND = "streaming_step"
#: ONNX metadata key holding :meth:`StreamingLayout.to_metadata`.
KEY_STREAMING = "cafetalk.streaming"
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps


@dataclass(frozen=True)
class StreamingLayout:
    """The fixed timing a ``streaming_step`` graph is built for (model frames at 25 fps).

    Attributes:
        hop_frames: H, frames emitted per call (2 = 80 ms).
        lookahead_frames: L, audio after a frame's end it waits for (4 = 160 ms, 2 = 80 ms).
        past_frames: P, emitted frames the denoiser keeps in its window (inpainted).
        encoder_context_frames: E, audio before the new frames the speech encoder hears.
        num_inference_steps: K DDIM steps per hop.
        join_s: time constant of the join correction on the new frames (seconds).
    Raises:
        InputError: a value out of range (the message names it).
    """

    hop_frames: int = 2
    lookahead_frames: int = 4
    past_frames: int = 8
    encoder_context_frames: int = 25
    num_inference_steps: int = 2
    join_s: float = 0.04
    fps: int = 25

    def __post_init__(self):
        ranges = {"hop_frames": (1, 25), "lookahead_frames": (0, 25), "past_frames": (1, 50),
                  "encoder_context_frames": (0, 250), "num_inference_steps": (1, 50)}
        for name, (lo, hi) in ranges.items():
            v = getattr(self, name)
            if not (isinstance(v, int) and lo <= v <= hi):
                raise InputError(f"StreamingLayout.{name} must be an integer in [{lo}, {hi}], got {v!r}")
        if self.fps != 25:
            raise InputError(f"the streaming graph runs at the model's 25 fps, got fps={self.fps}")
        if not 0.0 <= self.join_s <= 1.0:
            raise InputError(f"StreamingLayout.join_s must be in [0, 1] seconds, got {self.join_s!r}")

    # -- derived sizes -----------------------------------------------------------------------
    @property
    def chunk_samples(self) -> int:
        """Samples of new audio per call (H · 640)."""
        return self.hop_frames * SAMPLES_PER_FRAME

    @property
    def audio_state_samples(self) -> int:
        """Length of ``state_audio``: (E + L) · 640."""
        return (self.encoder_context_frames + self.lookahead_frames) * SAMPLES_PER_FRAME

    @property
    def window_frames(self) -> int:
        """T = P + H + L, the denoiser window."""
        return self.past_frames + self.hop_frames + self.lookahead_frames

    @property
    def lookahead_s(self) -> float:
        return self.lookahead_frames / self.fps

    @property
    def hop_s(self) -> float:
        return self.hop_frames / self.fps

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-stream (batch axis omitted) shape of each state input."""
        return {"state_audio": (self.audio_state_samples,),
                "state_features": (2 * self.past_frames, AUDIO_FEATURE_DIM),
                "state_frames": (self.past_frames, NUM_BLENDSHAPES)}

    def to_metadata(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_metadata(cls, text: str) -> "StreamingLayout":
        return cls(**json.loads(text))

    def export_command(self, model_path, precision: str = "fp32") -> str:
        """The command line that writes this layout's graph into the checkpoint's user cache."""
        return (f"cafetalk-rt export streaming --model {model_path} --lookahead-ms {self.lookahead_frames * 40} "
                f"--hop-ms {self.hop_frames * 40} --past-ms {self.past_frames * 40} "
                f"--encoder-context-ms {self.encoder_context_frames * 40} "
                f"--num-inference-steps {self.num_inference_steps} --precision {precision}")

    def filename(self, precision: str = "fp32") -> str:
        """``streaming_step_la<L>_h<H>_p<P>_e<E>_k<K>.<precision>.onnx``."""
        return (f"{KIND}_la{self.lookahead_frames}_h{self.hop_frames}_p{self.past_frames}"
                f"_e{self.encoder_context_frames}_k{self.num_inference_steps}.{precision}.onnx")


def _state(name: str, shape: tuple, doc: str) -> TensorSpec:
    return _t(name, "float32", ("batch", *shape), doc)


def graph_io(layout: StreamingLayout) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """(inputs, outputs) of the ``streaming_step`` graph for ``layout``, in order."""
    s = layout.state_shapes()
    t = layout.window_frames
    states = [("state_audio", "audio samples the encoder hears again (16 kHz)"),
              ("state_features", "speech features of the past frames (50 Hz)"),
              ("state_frames", "the newest emitted frames, ARKit units")]
    inputs = (
        _t("audio_chunk", "float32", ("batch", layout.chunk_samples), "the hop's new 16 kHz mono samples"),
        *(_state(n, s[n], d) for n, d in states),
        _t("start", "float32", ("batch",), "1 on a stream's first call (the state is replaced by silence), else 0"),
        _t("noise", "float32", ("batch", t, NUM_BLENDSHAPES), "x_T of the window's frames"),
        _t("emotion", "int64", ("batch", 2), "(old, new) emotion indices (metadata 'emotions')"),
        _t("intensity", "float32", ("batch", 2), "(old, new) intensity levels 1-3"),
        _t("condition_mix", "float32", ("batch",), "weight of the new condition, 0-1"),
        _t("guidance_scale", "float32", ("batch",), "CFG scale s_c of the emotion; 1 = off"),
    )
    outputs = (
        _t("frames", "float32", ("batch", layout.hop_frames, NUM_BLENDSHAPES),
           "the hop's final frames, ARKit units in [0, 1], 25 fps"),
        *(_state("next_" + n, s[n], d + " (feed back as " + n + ")") for n, d in states),
    )
    return inputs, outputs


def tensorrt_profiles(layout: StreamingLayout, *, max_batch: int = 16, opt_batch: int = 4) -> dict:
    """{input name: (min, opt, max) shape} of the TensorRT optimization profile: only the batch
    (streams) varies, 1 … ``max_batch``."""
    inputs, _ = graph_io(layout)
    return {t.name: tuple(tuple(b if d == "batch" else d for d in t.shape) for b in (1, opt_batch, max_batch))
            for t in inputs}


#: The default live layout (0.16 s look-ahead) and the 0.08 s one: both ship.
DEFAULT_LAYOUT = StreamingLayout()
LAYOUTS = {160: DEFAULT_LAYOUT, 80: StreamingLayout(lookahead_frames=2)}
