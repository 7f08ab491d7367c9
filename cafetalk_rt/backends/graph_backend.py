"""The pipeline's backend protocol (``encode`` / ``sample``) on exported graphs, for any engine
that provides a :class:`~cafetalk_rt.backends.base.GraphRunner` (ONNX Runtime, TensorRT).

* ``encode``: the ``speech_encoder`` graph (log-mel inside).
* ``sample`` with DDIM: ONE call of the fused ``sampler`` graph for K = ``num_inference_steps``
  (all K steps, all CFG branches and the solver inside).
* ``sample`` with DDPM or DPM-Solver++ (host-side samplers): the runtime's own sampler function
  (:mod:`cafetalk_rt.diffusion.samplers`, array-agnostic) drives the ``denoiser_step`` graph, which does the
  batched CFG of one step.
* With CFG off (both guidance scales 1, no AU condition) the same on the CFG-off variants
  (``sampler_cond``, ``denoiser_step_cond``; ``base.COND_VARIANTS``): one branch per step
  instead of three, the same result (x0 = G_AC).
* With an AU condition (``fine``) the same, on the AU variants (``sampler_au``,
  ``denoiser_step_au``; ``base.AU_VARIANTS``): mask-based CFG with region anchoring inside the
  graph, as ``TorchBackend.sample(fine=...)``. Host-side samplers then carry the stacked
  (controlled, uncontrolled) state of ``cafetalk_rt.diffusion.guidance.anchored_fine_denoiser``. Only
  checkpoints with the fine-control adapter have AU graphs.

Graphs come from the package (the shipped default model's fp32 graphs) or the user cache
(:func:`cafetalk_rt.backends.cache.graph_dirs`); each one's metadata is checked against the
checkpoint hash, K and precision. Nothing is exported here: a missing or stale graph raises an
error that names the ``cafetalk-rt export onnx`` command that writes it. A fused sampler that is
not there for the asked K is no error: DDIM then runs on the host over the step graph (one call
per step; the same numbers within fp32 rounding).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from cafetalk_rt.backends.base import GraphRunner, StepDenoiser
from cafetalk_rt.backends.cache import export_command, file_sha256, find_file, find_graph, graph_dirs
from cafetalk_rt.backends.contract import (AU_VARIANTS, AUDIO_FEATURES, BLENDSHAPES, COND_VARIANTS, X0_PRED,
                                           X0_PRED_AU, X0_PRED_UNCONTROLLED, GraphMetadata, StaleGraphError,
                                           graph_filename)
from cafetalk_rt.errors import InputError, MissingDependencyError
from cafetalk_rt.model_files import check_checkpoint, has_fine_control
from cafetalk_rt.control.au import AUCondition
from cafetalk_rt.diffusion.guidance import BranchPlan
from cafetalk_rt.diffusion.samplers import SAMPLERS
from cafetalk_rt.diffusion.schedule import inference_timesteps, make_schedule

log = logging.getLogger(__name__)

OpenRunner = Callable[[Path], GraphRunner]


class GraphBackend:
    """Exported-graph backend.

    Args:
        name: backend name ("onnxruntime", "tensorrt").
        model_path: the denoiser checkpoint the graphs are exported from (its hash keys the cache).
        open_runner: ``path of an ONNX graph → GraphRunner`` (the engine).
        precision: "fp32" or "fp16" graphs.
    Raises:
        FileNotFoundError, InputError: ``model_path`` is not a checkpoint.
        MissingDependencyError: a graph is not there (the message names the export command).
        StaleGraphError: a graph belongs to another checkpoint, K, precision or format.
    """

    def __init__(self, name: str, model_path: str | Path, open_runner: OpenRunner, *, precision: str = "fp32"):
        self.name = name
        self.model_path = Path(model_path)
        self.precision = precision
        check_checkpoint(self.model_path)
        self.model_sha256 = file_sha256(self.model_path)
        #: the checkpoint has the stage-2 adapter, hence AU graphs
        self.fine_control = has_fine_control(self.model_path)
        self.graph_dirs = graph_dirs(self.model_path, precision)
        self._open = open_runner
        self._graphs: dict[tuple[str, int | None], tuple[GraphRunner, GraphMetadata]] = {}
        #: metadata of the model (``fps`` etc.), read from the graphs
        self.config: GraphMetadata = self.graph("speech_encoder")[1]
        self.graph("denoiser_step")
        #: the model's noise schedule (the host-side samplers' update rule)
        self.schedule = make_schedule(self.config.schedule, self.config.num_train_timesteps)

    def find(self, kind: str, num_inference_steps: int | None = None) -> Path | None:
        """Path of graph ``kind`` (K for per-K graphs) in :attr:`graph_dirs`, or None."""
        return find_graph(self.graph_dirs, kind, self.precision, num_inference_steps)

    def graph(self, kind: str, num_inference_steps: int | None = None) -> tuple[GraphRunner, GraphMetadata]:
        """The loaded (runner, metadata) of one graph, opened on first use.

        Raises:
            MissingDependencyError: the graph is not there; StaleGraphError: it does not match.
        """
        ks = [num_inference_steps] if num_inference_steps else []
        return self._opened((kind, num_inference_steps), graph_filename(kind, self.precision, num_inference_steps),
                            export_command(self.model_path, self.precision, [kind], ks), kind=kind,
                            num_inference_steps=num_inference_steps)

    def _opened(self, key, name: str, command: str, *, extra: tuple[str, str] | None = None,
                **want) -> tuple[GraphRunner, GraphMetadata]:
        """Open graph file ``name`` (first of :attr:`graph_dirs`) once under ``key``, checked against
        ``want`` (``GraphMetadata.check``) and, with ``extra`` (metadata key, value), that entry.

        Raises:
            MissingDependencyError: no such file (the message names ``command``).
            StaleGraphError: it belongs to another checkpoint, precision, K or layout (names
                ``command --force``).
        """
        if key not in self._graphs:
            path = find_file(self.graph_dirs, name)
            if path is None:
                raise MissingDependencyError(
                    f"no {name} for {self.model_path} (looked in {', '.join(map(str, self.graph_dirs))}); write it "
                    f"with `{command}` (needs pip install 'cafetalk-rt[export]')")
            runner = self._open(path)
            try:
                meta = GraphMetadata.from_metadata(runner.metadata, source=str(path)).check(
                    precision=self.precision, model_sha256=self.model_sha256, source=str(path), **want)
                if extra is not None and runner.metadata.get(extra[0]) != extra[1]:
                    raise StaleGraphError(f"{path}: built for {runner.metadata.get(extra[0])}, not {extra[1]}")
            except StaleGraphError as e:
                runner.close()
                raise StaleGraphError(f"{e}; rewrite it with `{command} --force`") from None
            self._graphs[key] = (runner, meta)
        return self._graphs[key]

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """(L,) float32 16 kHz → (ceil(L / 320), 384) float32 speech features at 50 Hz."""
        run, meta = self.graph("speech_encoder")
        return run(meta.feed(audio=np.asarray(audio, np.float32)[None]))[AUDIO_FEATURES.name][0]

    def encode_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Clips of one length in ONE speech-encoder call ((B, L) → B × (T_a, 384)); clips of
        different lengths one call each (a graph batch needs one shape)."""
        if len({len(a) for a in audios}) != 1:
            return [self.encode(a) for a in audios]
        run, meta = self.graph("speech_encoder")
        return list(run(meta.feed(audio=np.stack([np.asarray(a, np.float32) for a in audios])))[AUDIO_FEATURES.name])

    def sample(self, features: np.ndarray, noise: np.ndarray, *, emotion: int, intensity: int, options,
               step_noise: np.ndarray | None = None, fine: AUCondition | None = None) -> np.ndarray:
        """Denoise ``noise`` (B, T, 52) given ``features`` (B, T_a, 384); returns blendshapes
        (B, T, 52) float32 (clipped to [0, 1] by the DDIM graph, unclipped for host samplers).
        ``step_noise`` (K, B, T, 52) is required for DDPM. ``fine``: optional
        :class:`~cafetalk_rt.control.au.AUCondition` (B, T, n_AU) / (B, T) at the model fps, guided
        with ``options.au_guidance_scale`` (the ``*_au`` graphs).

        Raises:
            InputError: an AU condition for a checkpoint without the fine-control adapter.
        """
        b = noise.shape[0]
        conds, unguided = self._conditions(b, emotion, intensity, options, fine)
        variants = AU_VARIANTS if fine is not None else COND_VARIANTS if unguided else {}
        kind = {plain: variants.get(plain, plain) for plain in ("sampler", "denoiser_step")}
        k = options.num_inference_steps
        if options.sampler == "ddim" and self.find(kind["sampler"], k) is not None:
            run, meta = self.graph(kind["sampler"], k)
            return run(meta.feed(noise=noise, audio_features=features, **conds))[BLENDSHAPES.name]
        if fine is None:  # the host loop over the guided step graph
            step = self.step_denoiser(features, emotion=emotion, intensity=intensity, options=options)
            denoiser, tile = step.denoise, (lambda x: x)
        else:
            run, info = self.graph(kind["denoiser_step"])

            def denoiser(x_t: np.ndarray, t: int) -> np.ndarray:
                # (2B, T, 52): controlled rows, then uncontrolled rows (guidance.anchored_fine_denoiser)
                out = run(info.feed(x_t=x_t[:b], x_t_uncontrolled=x_t[b:], timestep=np.full(b, t, np.int64),
                                    audio_features=features, **conds))
                return np.concatenate([out[X0_PRED_AU.name], out[X0_PRED_UNCONTROLLED.name]])

            def tile(x: np.ndarray) -> np.ndarray:  # both trajectories start from the same x_T (and step noise)
                return np.concatenate([x, x])

        timesteps = inference_timesteps(k, self.config.num_train_timesteps)
        steps = None if step_noise is None else [tile(z) for z in step_noise]
        x0 = SAMPLERS[options.sampler](denoiser, tile(noise), timesteps, self.schedule, noise=steps)[:b]
        return (x0 * self.config.bs_std + self.config.bs_mean).astype(np.float32)

    def _conditions(self, b: int, emotion, intensity, options, fine: AUCondition | None = None) -> tuple[dict, bool]:
        """The per-row condition inputs of the graphs ((B,) arrays; ``emotion``/``intensity`` a
        scalar or one per row) and whether CFG is off (then the ``*_cond`` graphs, no scales)."""
        conds = {"emotion": np.broadcast_to(np.asarray(emotion, np.int64), (b,)),
                 "intensity": np.broadcast_to(np.asarray(intensity, np.float32), (b,))}
        unguided = fine is None and BranchPlan.for_options(options).num_base == 1
        if not unguided:  # CFG off: the *_cond graphs evaluate the conditional branch alone (B rows, not 3B)
            conds.update(guidance_scale=np.full(b, options.guidance_scale, np.float32),
                         audio_guidance_scale=np.full(b, options.audio_guidance_scale, np.float32))
        if fine is not None:
            if not self.fine_control:
                raise InputError(f"{self.model_path.name} has no fine-control adapter (a stage-1 checkpoint), so AU "
                                 "spans cannot be applied; pass a stage-2 checkpoint with --model")
            conds.update(au=fine.au, au_mask=fine.au_mask, au_guidance_scale=np.full(b, options.au_guidance_scale, np.float32))
        return conds, unguided

    def step_denoiser(self, features: np.ndarray, *, emotion, intensity, options) -> StepDenoiser:
        """The guided step on the ``denoiser_step`` graph (``denoiser_step_cond`` with CFG off) for
        ``features`` (B, T_a, 384); ``emotion`` (B,) int / ``intensity`` (B,) float, or scalars."""
        b = features.shape[0]
        conds, unguided = self._conditions(b, emotion, intensity, options)
        run, meta = self.graph(COND_VARIANTS["denoiser_step"] if unguided else "denoiser_step")

        def denoise(x_t: np.ndarray, t: int) -> np.ndarray:
            return run(meta.feed(x_t=x_t, timestep=np.full(b, t, np.int64), audio_features=features, **conds))[X0_PRED.name]

        return StepDenoiser(denoise, meta.bs_mean, meta.bs_std, self.schedule)

    def streaming_step(self, layout):
        """The ``streaming_step`` graph of ``layout`` (:mod:`~cafetalk_rt.backends.streaming_contract`),
        opened once: ``run(feeds) → outputs``, dicts of numpy arrays by the graph's names.

        Raises:
            MissingDependencyError: no graph for this layout (the message names the export command).
            StaleGraphError: the file belongs to another checkpoint, precision or layout.
        """
        from cafetalk_rt.backends.streaming_contract import KEY_STREAMING, KIND

        return self._opened((KIND, layout), layout.filename(self.precision),
                            layout.export_command(self.model_path, self.precision), kind=KIND,
                            num_inference_steps=layout.num_inference_steps,
                            extra=(KEY_STREAMING, layout.to_metadata()))[0]

    def close(self) -> None:
        for run, _ in self._graphs.values():
            run.close()
        self._graphs.clear()
