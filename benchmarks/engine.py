"""What one benchmark row runs, and how it is timed.

* :class:`RowSpec` names a configuration: backend, precision, K, batch, audio length, CFG, and
  whether it is the paper-style baseline.
* :class:`Engines` loads each backend of :data:`cafetalk_rt.backends.BACKENDS` once per
  (name, precision) on one device, or says why it cannot (:class:`Unavailable`).
* :meth:`Engines.prepare` turns a spec into a :class:`Workload`: ``run()`` is the end-to-end call
  (speech encoder included) and ``encode()`` the speech encoder alone.

  - batch 1: ``Animator.animate`` on the clip (the public path: windowing for long audio).
  - batch B > 1: B different clips encoded (``backend.encode_batch`` if the backend has one,
    else one ``encode`` per clip), then ONE ``backend.sample`` call over the B rows.
  - ``fused``: the backend's one-call ``animate_batch`` (audio → blendshapes in one graph replay)
    where it has one (``torch_cudagraph``).
  - the paper-style baseline (:func:`paper_baseline`): DDPM over all 1000 training timesteps,
    fp32, eager PyTorch, each CFG branch a SEPARATE forward pass (our engine batches them).

* :func:`measure` times a callable: warm-up first, device synchronised after every call.

Workload audio is the bundled real clip (3.1 s) tiled with short pauses
(``benchmarks.long_audio.recording``).
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import importlib
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.hardware import synchronize
from benchmarks.long_audio import recording
from cafetalk_rt.frames import SAMPLE_RATE

#: The paper's latency for 5 s of audio on an RTX 2080 Ti (Cafe-Talk, Table 7), ms.
PAPER_LATENCY_MS = 14_710.0
PAPER_AUDIO_S = 5.0
#: Silence between repetitions of the bundled clip in workload audio, seconds.
GAP_S = 0.25
#: Guidance scales of a "CFG on" row (the CLI defaults: emotion 1.5, audio off) and "CFG off".
CFG_ON, CFG_OFF = 1.5, 1.0


class Unavailable(Exception):
    """A backend / precision / workload that cannot run here; ``str()`` is the reason."""


@dataclass(frozen=True)
class RowSpec:
    """One benchmark configuration.

    Attributes:
        backend: a name of ``cafetalk_rt.backends.BACKENDS``.
        precision: "fp32" or "fp16" (compute precision).
        num_inference_steps: K.
        batch_size: clips per call.
        audio_s: seconds of audio per clip.
        cfg: classifier-free guidance on (emotion scale 1.5, 3 branches per step) or off (1 branch).
        sampler: "ddim" (fused into one graph on exported-graph backends), "dpmpp_2m" or "ddpm".
        paper_baseline: the paper-style reference (:func:`paper_baseline`).
        fused: through the backend's one-call ``animate_batch(audio (B, L), noise, …)`` (audio →
            blendshapes in one graph replay, ``torch_cudagraph``) instead of encode + sample.
    """

    backend: str
    precision: str
    num_inference_steps: int
    batch_size: int
    audio_s: float
    cfg: bool
    sampler: str = "ddim"
    paper_baseline: bool = False
    fused: bool = False

    @property
    def path(self) -> str:
        """How the row calls the engine: "paper_baseline", "animate_batch", "Animator.animate"
        (batch 1) or "encode+sample" (batch > 1)."""
        if self.paper_baseline:
            return "paper_baseline"
        if self.fused:
            return "animate_batch"
        return "Animator.animate" if self.batch_size == 1 else "encode+sample"

    @property
    def options(self):
        from cafetalk_rt.options import AnimateOptions

        return AnimateOptions(num_inference_steps=self.num_inference_steps, sampler=self.sampler,
                              guidance_scale=CFG_ON if self.cfg else CFG_OFF, seed=0)

    @property
    def branches(self) -> int:
        from cafetalk_rt.diffusion import guidance

        o = self.options
        return guidance.BranchPlan.for_options(o).num_base


def paper_baseline_spec(audio_s: float = PAPER_AUDIO_S) -> RowSpec:
    """The paper-style reference row: DDPM, 1000 steps, CFG as separate passes, fp32, eager torch."""
    return RowSpec("torch", "fp32", 1000, 1, audio_s, True, sampler="ddpm", paper_baseline=True)


@dataclass
class Workload:
    """A prepared row: ``run()`` → (B, T, 52) or (T, 52) blendshapes; ``encode()`` → features.
    Both must be called inside ``context()`` (fp16 autocast for the torch backend on CUDA)."""

    spec: RowSpec
    run: Callable[[], np.ndarray]
    encode: Callable[[], object]
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    segments: list = field(default_factory=list)
    notes: str = ""


def workload_clips(audio_s: float, batch_size: int) -> list[np.ndarray]:
    """``batch_size`` different (L,) float32 clips of ``audio_s`` seconds: the bundled clip tiled
    with GAP_S pauses, each clip starting at another offset."""
    from cafetalk_rt.audio import load_audio
    from cafetalk_rt.pipeline import DEMO_CLIP

    clip = load_audio(DEMO_CLIP)
    n = int(round(audio_s * SAMPLE_RATE))
    long = recording(clip, audio_s + batch_size * 0.37 + 1.0, gap_s=GAP_S)
    return [long[int(i * 0.37 * SAMPLE_RATE):][:n].copy() for i in range(batch_size)]


def _loader(name: str):
    """The registry's loader function of backend ``name``.

    Raises:
        ImportError: its package is missing (the registry's message names what to install).
    """
    from cafetalk_rt.backends import _LOADERS, load_backend

    module, attr, _ = _LOADERS[name]
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError:
        load_backend(name, None)  # raises the registry's ImportError with its install hint
        raise


class Engines:
    """Backends of the registry loaded on ``device``, cached per (name, precision), each behind
    an ``Animator`` (a copy of the torch one with its backend swapped, so nothing loads twice).

    fp16: a backend loader with a ``precision`` parameter gets it (exported fp16 graphs); the eager
    torch backend runs under ``torch.autocast(float16)`` on CUDA; anything else is fp32 only.

    Args:
        device: "cpu" or "cuda[:N]".
        model_path: the denoiser checkpoint (default: the shipped model).
        threads: CPU threads for torch and ONNX Runtime (None: their defaults).
    """

    def __init__(self, device: str = "cpu", model_path: str | Path | None = None, threads: int | None = None):
        from cafetalk_rt.pipeline import DEFAULT_MODEL

        self.device = device
        self.model_path = Path(model_path) if model_path else DEFAULT_MODEL
        self.threads = threads
        self._animators: dict[tuple[str, str], object] = {}
        self._failed: dict[tuple[str, str], str] = {}
        self._autocast: set[tuple[str, str]] = set()
        if threads:
            import torch

            torch.set_num_threads(threads)

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Backend names of the registry."""
        from cafetalk_rt.backends import BACKENDS

        return tuple(BACKENDS)

    def animator(self, name: str, precision: str = "fp32"):
        """An ``Animator`` whose backend is ``name`` at ``precision`` on this device.

        Raises:
            Unavailable: the backend or this precision of it cannot run here (reason inside).
        """
        key = (name, precision)
        if key in self._failed:
            raise Unavailable(self._failed[key])
        if key not in self._animators:
            try:
                self._animators[key] = self._load(name, precision)
            except Unavailable as e:
                self._failed[key] = str(e)
                raise
            except (ImportError, RuntimeError, ValueError, OSError, TypeError) as e:
                self._failed[key] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
                raise Unavailable(self._failed[key]) from e
        return self._animators[key]

    def _load(self, name: str, precision: str):
        from cafetalk_rt.pipeline import Animator

        if (name, precision) == ("torch", "fp32"):
            return Animator(self.model_path, backend="torch", device=self.device)
        base = self.animator("torch", "fp32")
        if (name, precision) == ("torch", "fp16"):
            if not self.device.startswith("cuda"):
                raise Unavailable("fp16 eager PyTorch is measured on CUDA only (autocast fp16 on CPU is no deployment path)")
            self._autocast.add((name, precision))
            return copy.copy(base)
        if name == "onnxruntime" and self.device.startswith("cuda"):  # fail before a minute of graph export
            from cafetalk_rt.backends.onnxruntime_backend import import_onnxruntime

            if "CUDAExecutionProvider" not in import_onnxruntime().get_available_providers():
                raise Unavailable("onnxruntime-gpu is not installed (no CUDA execution provider)")
        if name in GRAPH_BACKENDS:
            export_missing(self.model_path, precision, [(k, None) for k in GRAPH_BASE_KINDS])
        loader = _loader(name)
        params = inspect.signature(loader).parameters
        kw = {"precision": precision} if "precision" in params else {}
        if self.threads and "intra_op_num_threads" in params:
            kw["intra_op_num_threads"] = self.threads
            backend = loader(self.model_path, device=self.device, **kw)
        elif self.threads and name == "onnxruntime":  # same thread count as torch for a fair comparison
            from cafetalk_rt.backends.graph_backend import GraphBackend
            from cafetalk_rt.backends.onnxruntime_backend import OnnxRuntimeRunner

            loader(self.model_path, device=self.device, **kw).close()  # the registry's checks
            backend = GraphBackend(name, self.model_path, lambda p: OnnxRuntimeRunner(
                p, device=self.device, intra_op_num_threads=self.threads), precision=precision)
        else:
            backend = loader(self.model_path, device=self.device, **kw)
        anim = copy.copy(base)
        anim.backend, anim.model_fps = backend, int(backend.config.fps)
        actual = backend_precision(backend)  # a loader without the parameter has one precision
        if actual != precision:
            self._animators[(name, actual)] = anim
            raise Unavailable(f"the {name} backend runs {actual} only")
        return anim

    def preload(self, name: str, precision: str, steps) -> None:
        """Export (if missing: the shipped graphs count) the fused sampler graphs, CFG on and off,
        of all K in ``steps``, for backends on exported graphs; a no-op for others.

        Raises:
            Unavailable: as :meth:`animator`.
        """
        backend = self.animator(name, precision).backend
        if name in GRAPH_BACKENDS:
            export_missing(backend.model_path, backend.precision,
                           [(kind, int(k)) for k in steps for kind in ("sampler", "sampler_cond")])

    def prepare(self, spec: RowSpec) -> Workload:
        """The callables of one row (loads the backend on first use, exports graphs if needed).

        Raises:
            Unavailable: the backend/precision cannot run here, or the workload is not supported.
        """
        from benchmarks.roofline import audio_samples, segments

        anim = self.animator(spec.backend, spec.precision)
        backend = anim.backend
        if spec.paper_baseline and spec.backend != "torch":
            raise Unavailable("the paper-style baseline runs on the eager torch backend")
        try:
            segs = segments(audio_samples(spec.audio_s), spec.batch_size, anim.model_fps)
        except ValueError as e:
            raise Unavailable(str(e)) from None
        clips = workload_clips(spec.audio_s, spec.batch_size)
        options = spec.options
        context = self._context(spec.backend, spec.precision)
        if spec.paper_baseline:
            return Workload(spec, lambda: paper_baseline(backend, clips[0], options), lambda: backend.encode(clips[0]),
                            context, segs, "DDPM 1000 steps, 3 CFG branches as separate forward passes, fp32 eager")
        if spec.fused:
            if not hasattr(backend, "animate_batch"):
                raise Unavailable(f"the {spec.backend} backend has no fused animate_batch call")
            if len(segs) != 1:
                raise Unavailable("the fused call takes clips up to one window; long audio goes through Animator")
            return Workload(spec, lambda: fused_batch(backend, clips, options), lambda: encode_clips(backend, clips),
                            context, segs, f"{spec.batch_size} clip(s) in one animate_batch call (log-mel on the device for torch_cudagraph)")
        if spec.batch_size == 1:
            from cafetalk_rt.longform.offline import encode_windows, window_groups, windows_per_call
            from cafetalk_rt.longform.windows import WindowOptions, plan_windows

            plan = plan_windows(clips[0].size, anim.model_fps, WindowOptions())
            if plan.windowed:  # the encoder calls the pipeline makes: one per group of equal windows
                groups = window_groups(plan, range(plan.num_windows), options,
                                       windows_per_call(backend, WindowOptions()))
                encode = lambda: [encode_windows(backend, clips[0], plan, g) for g in groups]  # noqa: E731
                notes = f"Animator.animate, {plan.num_windows} windows in {len(groups)} calls"
            else:
                encode, notes = (lambda: backend.encode(clips[0])), "Animator.animate"
            return Workload(spec, lambda: anim.animate(clips[0], options).blendshapes, encode, context, segs, notes)
        return Workload(spec, lambda: sample_batch(backend, clips, options), lambda: encode_clips(backend, clips),
                        context, segs, f"{spec.batch_size} clips encoded, one sample call")

    def _context(self, name: str, precision: str) -> Callable[[], contextlib.AbstractContextManager]:
        if (name, precision) not in self._autocast:
            return contextlib.nullcontext
        import torch

        return lambda: torch.autocast(device_type="cuda", dtype=torch.float16)

    def close(self) -> None:
        for anim in self._animators.values():
            close = getattr(anim.backend, "close", None)
            if close is not None:
                close()  # an autocast copy shares its backend: closing twice is harmless
        self._animators.clear()


def encode_clips(backend, clips: list[np.ndarray]) -> np.ndarray:
    """(B, T_a, D_a) features of equally long clips: ``backend.encode_batch`` when the backend
    has it (as ``cafetalk_rt.longform.offline`` does), else one ``backend.encode`` per clip."""
    encode_batch = getattr(backend, "encode_batch", None)
    feats = encode_batch(clips) if encode_batch is not None else [backend.encode(c) for c in clips]
    return np.stack([np.asarray(f, np.float32) for f in feats])


def _conditions(backend, clips: list[np.ndarray], options) -> dict:
    """Seeded x_T (B, T, 52) float32 and the coarse conditions of a batch of equally long clips."""
    from cafetalk_rt.control.emotions import emotion_index
    from cafetalk_rt.frames import num_frames

    t = num_frames(clips[0].size, int(backend.config.fps))
    noise = np.random.default_rng(options.seed).standard_normal((len(clips), t, 52), dtype=np.float32)
    return {"noise": noise, "emotion": emotion_index(options.emotion), "intensity": options.intensity,
            "options": options}


def sample_batch(backend, clips: list[np.ndarray], options) -> np.ndarray:
    """Encode B clips and denoise them in ONE backend call: (B, T, 52) float32 in [0, 1]."""
    x0 = backend.sample(encode_clips(backend, clips), **_conditions(backend, clips, options))
    return np.clip(np.asarray(x0, np.float32), 0.0, 1.0)


def fused_batch(backend, clips: list[np.ndarray], options) -> np.ndarray:
    """B clips through the backend's one-call ``animate_batch`` (audio → blendshapes):
    (B, T, 52) float32 in [0, 1]."""
    x0 = backend.animate_batch(np.stack(clips), **_conditions(backend, clips, options))
    return np.clip(np.asarray(x0, np.float32), 0.0, 1.0)


def backend_precision(backend) -> str:
    """The compute precision a loaded backend runs: its ``precision`` attribute (exported
    graphs), else its torch ``dtype`` (float16 → "fp16"), else "fp32"."""
    precision = getattr(backend, "precision", None)
    if isinstance(precision, str):
        return precision
    return {"torch.float16": "fp16", "torch.bfloat16": "bf16"}.get(str(getattr(backend, "dtype", "")), "fp32")


def paper_baseline(backend, audio: np.ndarray, options) -> np.ndarray:
    """The paper-style sampling on a ``TorchBackend``: speech features, then ancestral DDPM over
    ``options.num_inference_steps`` timesteps (1000 = all) where every CFG branch of
    ``cafetalk_rt.diffusion.guidance.BRANCHES`` is its OWN forward pass of the denoiser, fp32, eager.
    Same noise, guidance combine and sampler function as the engine, so the result equals the
    torch backend's batched ``--sampler ddpm`` output up to float rounding.

    Returns:
        (T, 52) float32 blendshapes in [0, 1] at the model fps.
    Raises:
        Unavailable: a backend without a PyTorch denoiser, or an ε-predicting model.
    """
    import torch

    from cafetalk_rt.diffusion import guidance
    from cafetalk_rt.control.emotions import emotion_index
    from cafetalk_rt.frames import num_frames
    from cafetalk_rt.diffusion.noise import initial_noise
    from cafetalk_rt.diffusion.samplers import sample_ddpm
    from cafetalk_rt.diffusion.schedule import inference_timesteps

    model = getattr(backend, "model", None)
    if model is None or model.config.prediction_type != "x0":
        raise Unavailable("the paper-style baseline needs the torch backend with an x0-predicting model")
    dev = backend.device
    keep = {"full": (1.0, 1.0), "audio_only": (1.0, 0.0), "null": (0.0, 0.0)}  # (audio, coarse) per branch
    n = guidance.BranchPlan.for_options(options).num_base
    with torch.inference_mode():
        feats = torch.from_numpy(backend.encode(audio)[None]).to(dev)  # (1, T_a, D_a)
        x_t, step_noise = initial_noise(options.seed, num_frames(audio.size, model.config.fps),
                                        options.num_inference_steps, True)
        emo = torch.tensor([emotion_index(options.emotion)], device=dev)
        inten = torch.tensor([float(options.intensity)], device=dev)
        flags = [tuple(torch.tensor([v], device=dev) for v in keep[b]) for b in guidance.BRANCHES[:n]]

        def branch_by_branch(x_rows, t):  # rows laid out as BRANCHES, one forward per branch
            tt = torch.tensor([t], device=dev)
            return torch.cat([model(x_rows[i : i + 1], tt, feats, emo, inten, a, c) for i, (a, c) in enumerate(flags)])

        denoise = guidance.guided_denoiser(branch_by_branch, 1, options.audio_guidance_scale, options.guidance_scale,
                                           repeat=lambda x, k: x.repeat(k, 1, 1))
        timesteps = inference_timesteps(options.num_inference_steps, backend.schedule.num_train_timesteps)
        x0 = sample_ddpm(denoise, torch.from_numpy(x_t).to(dev), timesteps, backend.schedule,
                         noise=[torch.from_numpy(z).to(dev) for z in step_noise])
        return model.denormalize(x0[0]).clamp(0.0, 1.0).float().cpu().numpy()


#: Backends that run exported graphs (the benchmark exports what the package does not ship).
GRAPH_BACKENDS = ("onnxruntime", "tensorrt")
GRAPH_BASE_KINDS = ("speech_encoder", "denoiser_step", "denoiser_step_cond")


def export_missing(model_path, precision: str, wanted: list[tuple[str, int | None]]) -> None:
    """Export into the checkpoint's cache the graphs ``wanted`` = [(kind, K or None)] that neither
    the package nor the cache holds (the runtime exports nothing itself; a benchmark of other K
    or fp16 needs them). Needs the ``[export]`` extra."""
    from cafetalk_rt.backends.cache import file_sha256, find_graph, graph_dir, graph_dirs

    dirs = graph_dirs(model_path, precision)
    missing = [(kind, k) for kind, k in wanted if find_graph(dirs, kind, precision, k) is None]
    if not missing:
        return
    from export.onnx_export import export_onnx

    ks = tuple(sorted({k for _, k in missing if k})) or (1,)
    export_onnx(model_path, graph_dir(file_sha256(model_path)), num_inference_steps=ks,
                kinds=tuple(sorted({kind for kind, _ in missing})), precisions=(precision,))


def measure(fn: Callable[[], object], device: str, *, warmup: int = 1, repeats: int = 5, min_time_s: float = 0.0,
            max_time_s: float = float("inf"), max_repeats: int = 1000, cpu_ms: list | None = None) -> list[float]:
    """Wall times in ms of synchronised calls of ``fn`` after ``warmup`` untimed calls.

    Timed calls continue until at least ``repeats`` were made AND ``min_time_s`` has passed
    (fast GPU calls), but stop once ``max_time_s`` has passed after at least min(3, repeats)
    calls (slow CPU calls), and at ``max_repeats``. ``cpu_ms``: a list that receives each call's
    process CPU time in ms (all threads; on a shared CPU the work done, without the waiting).
    """
    for _ in range(warmup):
        fn()
        synchronize(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_repeats:
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
        if cpu_ms is not None:
            cpu_ms.append((time.process_time() - c0) * 1e3)
        elapsed = time.perf_counter() - start
        if len(times) >= repeats and elapsed >= min_time_s:
            break
        if elapsed >= max_time_s and len(times) >= min(3, repeats):
            break
    return times
