"""CUDA-graph backend (``--backend torch_cudagraph --device cuda``): the torch backend's program in
fp16, replayed from CUDA graphs, without TensorRT.

What runs on the GPU (issue 5, "GPU path without TensorRT"):

* fp16 weights and activations for the speech encoder and the denoiser (no bf16: 2080 Ti-class
  GPUs lack it); the solver state x_t, the CFG combine and the output denormalisation stay
  float32 (tensors of B·T·52 values: free, and the solver's 1/√(1−ᾱ) factors would amplify fp16
  rounding). Attention is ``torch.nn.functional.scaled_dot_product_attention`` in both networks
  (``nn/denoiser.py`` ``Attention``, ``nn/speech_encoder.py`` ``WhisperSpeechEncoder._attention``),
  so PyTorch can pick a fused CUDA kernel (with an additive bias: the memory-efficient one).
* The program is the eager torch backend's own (:func:`~cafetalk_rt.backends.torch_backend.sample_tensors` over
  :class:`~cafetalk_rt.nn.guided.GuidedDenoiser`:
  all CFG branches in one batched forward per step, K steps of DDIM or DPM-Solver++(2M)), run on
  static buffers and captured with ``torch.cuda.graph`` into ONE ``torch.cuda.CUDAGraph`` per
  bucket :class:`GraphKey` = (program kind, batch, input frames, frames, K, sampler, CFG on/off):

  - ``fused`` (:meth:`CudaGraphBackend.animate_batch`): audio (B, L) → log-mel → Whisper encoder →
    K-step sampler with CFG → blendshapes, the whole call in one graph;
  - ``encode`` + ``sample`` (:meth:`~CudaGraphBackend.encode`, :meth:`~CudaGraphBackend.sample`):
    the :class:`~cafetalk_rt.backends.base.Backend` protocol the pipeline calls (it cuts each
    window's features out of a longer encoder input between the two, so they are two graphs).

  The log-mel front end runs on the GPU inside the graphs (float32
  :class:`~cafetalk_rt.nn.log_mel.LogMelSpectrogram`, TF32 off: it equals the host
  ``cafetalk_rt.nn.features.log_mel`` the eager backends use to ~1e-6), so a call moves only the
  waveform in and the blendshapes out. Per PyTorch's "CUDA Graphs" notes (``torch.cuda.graph``): each new bucket is
  warmed up on a side stream, then captured; later calls of the bucket copy their inputs into the
  static buffers and ``replay()``. Guidance scales, emotion, intensity, noise and features are
  static-buffer inputs, so they are not baked in; the timesteps and solver coefficients are (they
  depend only on K, which is in the key). Buckets live in an LRU cache of ``max_graphs`` graphs.
* ``torch.compile`` of both networks (default mode, no inductor CUDA graphs of its own) is
  optional: ``compile=True`` or ``CAFETALK_RT_TORCH_COMPILE=1``; off by default.

Calls a graph does not cover run the same program eagerly in fp16, with a one-time logged note:
DDPM (per-step noise; ``sampler="ddpm"``) and AU spans (``fine``: no static buffers for the AU
condition yet). Shapes are exact (no padding), so each new audio length is a new capture
(warm-up runs plus the capture; a compilation with ``compile``). Not thread-safe: one backend per
thread.

Outputs equal the eager torch backend's within fp16 rounding: see :data:`FP16_ATOL` and
:data:`GRAPH_ATOL`.
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from functools import cached_property
from typing import Callable, Mapping, NamedTuple

import numpy as np
import torch

from cafetalk_rt.backends.torch_backend import guided_denoiser, sample_arrays, sample_tensors
from cafetalk_rt.diffusion.guidance import BranchPlan
from cafetalk_rt.errors import InputError
from cafetalk_rt.nn.checkpoint import load_denoiser
from cafetalk_rt.nn.log_mel import LogMelSpectrogram, exact_fp32_conv
from cafetalk_rt.diffusion.schedule import make_schedule

log = logging.getLogger(__name__)

#: Samplers captured in a graph; the others (DDPM) run eagerly in fp16.
GRAPH_SAMPLERS = ("ddim", "dpmpp_2m")
#: Program kinds of a :class:`GraphKey`.
KINDS = ("encode", "sample", "fused")
#: Graphs kept (least recently used ones are released first).
DEFAULT_MAX_GRAPHS = 16
#: Eager runs on the side stream before a capture (compiles with ``compile=True``).
WARMUP_RUNS = 2
#: Batch buckets (streams per call) of the live-streaming graphs: one capture each.
STREAM_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
#: Environment switch for ``torch.compile`` when the backend is built by name (CLI, Animator).
COMPILE_ENV = "CAFETALK_RT_TORCH_COMPILE"

#: Max abs difference in blendshape units ([0, 1]) allowed between this backend and the eager
#: fp32 torch backend: the bound the fp16 exported graphs are held to (tests/test_export_onnx.py,
#: tests/test_tensorrt.py). fp16 keeps 11 significant bits (unit roundoff 4.9e-4); measured fp16
#: error of the same networks on blendshapes: 1.6e-4–3e-4 (docs/export.md, ONNX Runtime fp16, K ≤ 4).
FP16_ATOL = 1e-2
#: Max abs difference allowed between a graph replay and the same program run eagerly (same fp16
#: weights, same inputs). A replay launches the kernels the eager run launched, so they normally
#: agree bit for bit; the bound allows two fp16 ulps at 1.0 (2 · 9.8e-4) should a library pick
#: another kernel for the capture.
GRAPH_ATOL = 2e-3


class GraphKey(NamedTuple):
    """One captured program: the shapes and static choices baked into its graph.

    Attributes:
        kind: "encode" (mel → features), "sample" (features → blendshapes) or "fused"
            (mel → blendshapes).
        batch: B, rows of the call.
        input_frames: L (audio samples, 16 kHz) for "encode" / "fused", T_a (features, 50 Hz)
            for "sample".
        num_frames: T, output frames at the model fps (0 for "encode").
        num_inference_steps: K (0 for "encode").
        sampler: "ddim" or "dpmpp_2m" ("" for "encode").
        guided: CFG branches are evaluated (3 rows per sequence) rather than one.
    """

    kind: str
    batch: int
    input_frames: int
    num_frames: int = 0
    num_inference_steps: int = 0
    sampler: str = ""
    guided: bool = False


def graph_key(kind: str, batch: int, input_frames: int, num_frames: int = 0, options=None) -> GraphKey:
    """The bucket of a call; ``options`` (``AnimateOptions``) is required unless ``kind`` is "encode".

    Raises:
        ValueError: unknown kind, or a sampler no graph covers (check :func:`eager_reason` first).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown graph kind {kind!r}; one of {KINDS}")
    if kind == "encode":
        return GraphKey(kind, int(batch), int(input_frames))
    if options.sampler not in GRAPH_SAMPLERS:
        raise ValueError(f"no CUDA graph for the {options.sampler!r} sampler (graphs: {', '.join(GRAPH_SAMPLERS)})")
    guided = BranchPlan.for_options(options).num_base > 1
    return GraphKey(kind, int(batch), int(input_frames), int(num_frames), int(options.num_inference_steps),
                    options.sampler, guided)


def eager_reason(options, fine=None) -> str | None:
    """Why a sampling call runs eagerly instead of from a graph, or None when a graph covers it."""
    if fine is not None:
        return ("AU spans (fine control) run eagerly, without a CUDA graph: the graphs have no static buffers for "
                "the AU condition (AUs, frame mask, region masks) yet")
    if options.sampler not in GRAPH_SAMPLERS:
        return (f"the {options.sampler} sampler runs eagerly, without a CUDA graph (graphs cover "
                f"{' and '.join(GRAPH_SAMPLERS)})")
    return None


def input_specs(key: GraphKey, *, feature_dim: int, channels: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Name → (shape, dtype) of the static input buffers of ``key``'s graph.

    ``audio`` (B, L) float32 16 kHz waveform; ``features`` (B, T_a, D_a) float32; ``noise``
    (B, T, C) float32 x_T; ``emotion`` (B,) int64; ``intensity`` (B,) float32 (1–3);
    ``audio_guidance_scale`` and ``guidance_scale`` () float32 (s_a, s_c; unused without CFG).
    Inputs are float32/int64 like the exported graphs' contract; the networks cast to fp16.
    """
    b, f32 = key.batch, torch.float32
    if key.kind == "sample":
        specs = {"features": ((b, key.input_frames, feature_dim), f32)}
    else:
        specs = {"audio": ((b, key.input_frames), f32)}
    if key.kind != "encode":
        specs.update(noise=((b, key.num_frames, channels), f32), emotion=((b,), torch.int64),
                     intensity=((b,), f32), audio_guidance_scale=((), f32), guidance_scale=((), f32))
    return specs


class StaticGraph:
    """A program over static input buffers, captured as one ``torch.cuda.CUDAGraph``.

    Follows PyTorch's "CUDA Graphs" recipe (docs: ``torch.cuda.graph``, "Whole-network capture"):
    ``WARMUP_RUNS`` eager runs on a side stream, then capture on a private memory pool. Later
    calls copy new values into ``inputs`` and replay; the returned tensor is the static output,
    overwritten by the next replay (copy it out first).
    Build and call it under ``torch.no_grad()``, not ``inference_mode``: buffers a capture
    writes must not be inference tensors (pytorch/pytorch#166792).

    Args:
        program: ``program(inputs) -> Tensor``; reads only the ``inputs`` buffers and does nothing a
            capture forbids (no host synchronisation, no host→device copies of new data).
        inputs: name → device tensor, the static input buffers (allocated before the capture).
        capture: False runs ``program`` eagerly at each replay on the same buffers (debugging a
            capture, and the CPU tests of this class).
        device: the CUDA device to capture on.
    """

    def __init__(self, program: Callable[[dict], torch.Tensor], inputs: dict[str, torch.Tensor], *,
                 capture: bool = True, device=None, warmup: int = WARMUP_RUNS):
        self.inputs = inputs
        self._program = program
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: torch.Tensor | None = None
        if capture:
            with torch.cuda.device(device):
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(warmup):
                        program(inputs)
                torch.cuda.current_stream().wait_stream(side)
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):
                    self.output = program(inputs)

    def set_inputs(self, values: Mapping[str, object]) -> None:
        """Copy ``values`` (numpy arrays or Python scalars, any numeric dtype) into the buffers.

        Raises:
            KeyError: a name that is not an input; ValueError: a shape other than the buffer's.
        """
        for name, value in values.items():
            buf = self.inputs[name]
            src = torch.from_numpy(np.require(value, requirements=["C", "W"]))  # 0-d stays 0-d
            if tuple(src.shape) != tuple(buf.shape):
                raise ValueError(f"input {name!r}: shape {tuple(src.shape)} != the graph's {tuple(buf.shape)}")
            buf.copy_(src)

    def replay(self) -> torch.Tensor:
        """Run the program on the current buffers; returns the static output tensor."""
        if self.graph is None:
            self.output = self._program(self.inputs)
        else:
            self.graph.replay()
        return self.output


def check_cuda_device(device) -> None:
    """Raise :class:`~cafetalk_rt.errors.InputError` unless ``device`` is a usable CUDA device; the
    message names the ``torch`` backend as the alternative."""
    if not str(device).startswith("cuda"):
        raise InputError(f"the torch_cudagraph backend runs on a CUDA GPU: pass --device cuda (got {device!r}); "
                         "on a CPU use --backend torch")
    if not torch.cuda.is_available():
        raise InputError(f"the torch_cudagraph backend needs a CUDA GPU, but torch.cuda.is_available() is False "
                         f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); use --backend torch "
                         "(eager fp32, CPU or CUDA)")


class CudaGraphBackend:
    """fp16 encoder + sampler replayed from CUDA graphs (module doc).

    Args:
        model_path: denoiser checkpoint (its ``speech_encoder`` must be "whisper-tiny.en").
        device: "cuda" or "cuda:N".
        compile: wrap both networks in ``torch.compile`` before capture; None (default) reads
            ``CAFETALK_RT_TORCH_COMPILE`` ("1" = on), else off.
        max_graphs: LRU bound on captured graphs (each holds its own activation memory).
        capture: False runs every bucket eagerly on its static buffers (debugging; the only mode
            in which a non-CUDA device is accepted).
        dtype: compute dtype of both networks, ``torch.float16`` (default; this backend's
            purpose) or ``torch.float32`` (debugging: then the program equals the eager torch
            backend's bit for bit). bf16 is refused (2080 Ti-class GPUs lack it).

    Attributes:
        captures: graphs captured so far (a bucket seen again is replayed, not captured).
        last_key: the :class:`GraphKey` of the last graph call (see :meth:`cached_graph`).

    Raises:
        InputError: no CUDA device (names ``--backend torch``), a checkpoint on another speech
            encoder, or a dtype other than float16 / float32.
        FileNotFoundError, ValueError: as ``load_denoiser``.
    """

    name = "torch_cudagraph"

    def __init__(self, model_path, *, device: str = "cuda", compile: bool | None = None,
                 max_graphs: int = DEFAULT_MAX_GRAPHS, capture: bool = True, dtype: torch.dtype = torch.float16):
        if capture:
            check_cuda_device(device)
        if dtype not in (torch.float16, torch.float32):
            raise InputError(f"the torch_cudagraph backend computes in float16 (or float32 for debugging), not {dtype}")
        self.device = torch.device(device)
        self.dtype = dtype
        model = load_denoiser(model_path, device=device)  # fp32
        stats = model.bs_mean, model.bs_std  # (52,) float32: denormalise in float32
        model.to(self.dtype)
        model.bs_mean, model.bs_std = stats
        self.model = model
        self.config = model.config
        if self.config.speech_encoder != "whisper-tiny.en":
            raise InputError(f"the torch_cudagraph backend runs the Whisper encoder (log-mel input); this "
                             f"checkpoint uses {self.config.speech_encoder!r}: use --backend torch")
        self.log_mel = LogMelSpectrogram().to(self.device)  # float32, on the GPU inside the graphs
        self.schedule = make_schedule(self.config.schedule, self.config.num_train_timesteps)
        self.compile = os.environ.get(COMPILE_ENV, "0") == "1" if compile is None else bool(compile)
        self._net = torch.compile(model) if self.compile else model
        self.max_graphs = int(max_graphs)
        self.capture = capture
        self.captures = 0
        self.last_key: GraphKey | None = None
        self._graphs: OrderedDict[GraphKey, StaticGraph] = OrderedDict()
        self._noted: set[str] = set()
        self._streaming: dict = {}  # layout → the streaming_step runner

    @cached_property
    def encoder(self) -> torch.nn.Module:
        """The fp16 Whisper encoder (``WhisperSpeechEncoder``), loaded on first use."""
        from cafetalk_rt.nn.speech_encoder import build_speech_encoder

        return build_speech_encoder(self.config.speech_encoder, dtype=self.dtype).to(self.device)

    @cached_property
    def _encoder_net(self):
        return torch.compile(self.encoder) if self.compile else self.encoder

    # -- the Backend protocol ----------------------------------------------------------------
    @torch.no_grad()
    def encode(self, audio: np.ndarray, *, graph: bool = True) -> np.ndarray:
        """(L,) float32 16 kHz → (T_a, D_a) float32 features at 50 Hz, T_a = ceil(L / 320), from the
        ``encode`` graph of this length (``graph=False``: the same program run eagerly, uncached).
        Raises ValueError: empty, not 1-D, or over 30 s."""
        audio = self._audio([audio])  # (1, L)
        return self._run(graph_key("encode", 1, audio.shape[1]), graph, audio=audio)[0].cpu().numpy()

    @torch.no_grad()
    def sample(self, features: np.ndarray, noise: np.ndarray, *, emotion: int, intensity: int, options,
               step_noise: np.ndarray | None = None, fine=None, graph: bool = True) -> np.ndarray:
        """As :meth:`TorchBackend.sample <cafetalk_rt.backends.torch_backend.TorchBackend.sample>`:
        features (B, T_a, D_a), noise (B, T, 52) → (B, T, 52) float32 blendshapes, not clipped; one
        replay of the ``sample`` graph (DDPM and ``fine`` run eagerly, see :func:`eager_reason`;
        ``graph=False``: the graph's program run eagerly, uncached)."""
        reason = eager_reason(options, fine)
        if reason is not None:
            self._note(reason)
            return self.eager_sample(features, noise, emotion=emotion, intensity=intensity, options=options,
                                     step_noise=step_noise, fine=fine)
        key = graph_key("sample", noise.shape[0], features.shape[1], noise.shape[1], options)
        out = self._run(key, graph, features=features, **self._conditions(noise, emotion, intensity, options))
        return out.cpu().numpy()

    # -- the fused call -----------------------------------------------------------------------
    @torch.no_grad()
    def animate_batch(self, audio: np.ndarray, noise: np.ndarray, *, emotion: int, intensity: int, options,
                      step_noise: np.ndarray | None = None, graph: bool = True) -> np.ndarray:
        """Audio to blendshapes in ONE graph replay: log-mel → encoder → K-step sampler, all on the GPU.

        Args:
            audio: (B, L) float32 16 kHz, rows of one length (≤ 30 s).
            noise: (B, T, 52) float32 x_T, T = ``cafetalk_rt.frames.num_frames(L, fps)``.
            emotion, intensity, options, step_noise: as :meth:`sample`.
            graph: False runs the graph's program eagerly (uncached): the reference of a replay.
        Returns:
            (B, T, 52) float32 blendshapes, not clipped; equals ``sample(features of encode(row))``
            within :data:`FP16_ATOL` (the batched encoder rounds differently for B > 1).
        Raises:
            ValueError: audio not (B, L), empty, or over 30 s.
        """
        audio = np.asarray(audio, np.float32)
        if audio.ndim != 2 or audio.shape[1] == 0:
            raise ValueError(f"audio must be (B, L) with L > 0 samples, got shape {audio.shape}")
        reason = eager_reason(options)
        if reason is not None:
            self._note(reason)
            features = np.stack([self.eager_encode(a) for a in audio])
            return self.eager_sample(features, noise, emotion=emotion, intensity=intensity, options=options,
                                     step_noise=step_noise)
        audio = self._audio(list(audio))  # (B, L)
        key = graph_key("fused", audio.shape[0], audio.shape[1], noise.shape[1], options)
        return self._run(key, graph, audio=audio, **self._conditions(noise, emotion, intensity, options)).cpu().numpy()

    # -- the same computation without graphs (fallbacks, references) ---------------------------
    @torch.inference_mode()
    def eager_encode(self, audio: np.ndarray) -> np.ndarray:
        """:meth:`encode` without a graph: the fp16 encoder run eagerly."""
        from cafetalk_rt.nn.speech_encoder import encode_audio

        return encode_audio(self.encoder, audio)

    def eager_sample(self, features: np.ndarray, noise: np.ndarray, *, emotion: int, intensity: int, options,
                     step_noise: np.ndarray | None = None, fine=None) -> np.ndarray:
        """:meth:`sample` without a graph: the fp16 model through the torch backend's program."""
        return sample_arrays(self.model, self.schedule, features, noise, emotion=emotion, intensity=intensity,
                             options=options, step_noise=step_noise, fine=fine)

    def streaming_step(self, layout):
        """The live-streaming hop (:class:`~cafetalk_rt.nn.streaming.StreamingStep` in this
        backend's dtype) replayed from one CUDA graph per batch bucket (:data:`STREAM_BUCKETS`): a
        call with B streams runs the smallest bucket N ≥ B, the extra rows fed with a silent
        stream start (their outputs are dropped). ``run(feeds) → outputs`` as the torch backend's.

        Raises:
            InputError: more streams than the largest bucket.
        """
        from cafetalk_rt.backends.streaming_contract import graph_io
        from cafetalk_rt.nn.streaming import StreamingStep

        if layout in self._streaming:  # one module and one set of bucket graphs per layout, shared by
            return self._streaming[layout]  # every stream (LiveBatch batches streams whose run is the same)
        module = StreamingStep(self.encoder, self.model, self.schedule, layout, self.dtype).to(self.device)
        inputs, outputs = graph_io(layout)
        graphs: dict[int, StaticGraph] = {}

        def program(inp: dict):
            with exact_fp32_conv():
                return module(*(inp[t.name] for t in inputs))

        @torch.no_grad()
        def run(feeds: dict) -> dict:
            b = len(feeds["start"])
            n = next((k for k in STREAM_BUCKETS if k >= b), None)
            if n is None:
                raise InputError(f"{b} streams in one call; the torch_cudagraph backend captures up to {STREAM_BUCKETS[-1]}")
            if n not in graphs:
                bufs = {t.name: torch.zeros((n, *t.shape[1:]), dtype=getattr(torch, t.dtype), device=self.device)
                        for t in inputs}
                graphs[n] = StaticGraph(program, bufs, capture=self.capture, device=self.device)
                self.captures += 1
            padded = {}
            for t in inputs:
                x = np.asarray(feeds[t.name], t.dtype)
                pad = np.zeros((n - b, *x.shape[1:]), x.dtype)
                if t.name == "start":
                    pad[:] = 1.0
                padded[t.name] = np.concatenate([x, pad])
            g = graphs[n]
            g.set_inputs(padded)
            return {t.name: y[:b].float().cpu().numpy() for t, y in zip(outputs, g.replay())}

        self._streaming[layout] = run
        return run

    def cached_graph(self, key: GraphKey) -> StaticGraph | None:
        """The cached graph of ``key`` (e.g. to time ``replay()`` alone), or None."""
        return self._graphs.get(key)

    # -- internals ----------------------------------------------------------------------------
    @staticmethod
    def _audio(audios: list[np.ndarray]) -> np.ndarray:
        """Equally long clips → (B, L) float32, checked as the Whisper input is
        (``speech_encoder.check_clips``: 1-D, non-empty, ≤ 30 s)."""
        from cafetalk_rt.nn.speech_encoder import check_clips

        check_clips(audios)
        if len({len(a) for a in audios}) > 1:
            raise ValueError("the rows of one call must have the same length (pad them or call per length)")
        return np.stack([np.asarray(a, np.float32) for a in audios])

    @staticmethod
    def _conditions(noise, emotion, intensity, options) -> dict:
        b = noise.shape[0]
        return {"noise": noise, "emotion": np.full(b, emotion, np.int64),
                "intensity": np.full(b, intensity, np.float32),
                "audio_guidance_scale": options.audio_guidance_scale, "guidance_scale": options.guidance_scale}

    def _note(self, reason: str) -> None:
        if reason not in self._noted:
            self._noted.add(reason)
            log.warning("torch_cudagraph: %s", reason)

    def _new_inputs(self, key: GraphKey) -> dict[str, torch.Tensor]:
        specs = input_specs(key, feature_dim=self.config.audio_dim, channels=self.config.num_channels)
        return {name: torch.zeros(shape, dtype=dtype, device=self.device) for name, (shape, dtype) in specs.items()}

    def _program(self, key: GraphKey) -> Callable[[dict], torch.Tensor]:
        """``program(inputs) -> output`` of ``key``: the encoder and/or the torch backend's
        ``sample_tensors``, with its guided denoiser built now (before any capture)."""
        guided = guided_denoiser(self.model, self.schedule, BranchPlan(3 if key.guided else 1), net=self._net)

        def program(inp: dict) -> torch.Tensor:
            if key.kind == "sample":
                features = inp["features"]  # (B, T_a, D_a) float32, cast to fp16 by the sampler
            else:
                with exact_fp32_conv():
                    mel = self.log_mel(inp["audio"])  # (B, 80, T_mel) float32 (STFT conv in full fp32)
                features = self._encoder_net(mel.to(self.dtype))  # (B, T_a, D_a) fp16
                if key.kind == "encode":
                    return features.float()
            return sample_tensors(guided, features, inp["noise"], emotion=inp["emotion"],
                                  intensity=inp["intensity"], audio_guidance_scale=inp["audio_guidance_scale"],
                                  guidance_scale=inp["guidance_scale"], sampler=key.sampler,
                                  num_inference_steps=key.num_inference_steps)

        return program

    def _run(self, key: GraphKey, graph: bool, **values) -> torch.Tensor:
        """Copy ``values`` into ``key``'s graph (captured on first use, LRU-cached) and replay it;
        ``graph=False``: run the program eagerly on fresh buffers, outside the cache."""
        self.last_key = key
        if not graph:
            g = StaticGraph(self._program(key), self._new_inputs(key), capture=False)
            g.set_inputs(values)
            return g.replay()
        g = self._graphs.get(key)
        if g is None:
            g = StaticGraph(self._program(key), self._new_inputs(key), capture=self.capture, device=self.device)
            self.captures += 1
            self._graphs[key] = g
            while len(self._graphs) > self.max_graphs:
                old, _ = self._graphs.popitem(last=False)
                log.debug("torch_cudagraph: released the graph of %s", old)
            log.debug("torch_cudagraph: captured %s (%d graphs)", key, len(self._graphs))
        else:
            self._graphs.move_to_end(key)
        g.set_inputs(values)
        return g.replay()
