"""``python -m benchmarks.live_features --corpus data/corpus``: where live lip-sync is lost.

Runs the live hop (:class:`~cafetalk_rt.nn.streaming.StreamingStep`'s window, inpainting and join)
over held-out TTS clips with two kinds of speech features, and scores each against the exact
ground truth (frames after the first ``past_s``): the stream's own features (Whisper over the last
``encoder context + hop + look-ahead`` of audio, for each ``--encoder-context-s``) and the
whole-clip features the offline path uses. If the second matches offline, the streaming scheme
costs nothing and the loss is in the features. Writes
``benchmarks/results/live-features-<date>.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import date

import numpy as np

from benchmarks.report import write_result


def _stream_clip(step, features_of_hop, num_frames: int, noise, emotion, intensity, guidance_scale: float):
    """(T, 52) frames of one clip, hop by hop, with ``features_of_hop(n) → (2(P+H+L), D)``."""
    import torch

    from cafetalk_rt.diffusion.samplers import sample_ddim

    lay, model = step.layout, step.guided.model
    h, la, p = lay.hop_frames, lay.lookahead_frames, lay.past_frames
    out = torch.zeros(num_frames + h + la + 1, 52)
    coarse = model.emotion_embedding(emotion, intensity)
    n = -(-(p + la) // h)
    while n * h - la < num_frames:
        f0 = n * h - la
        feats, known, raw = features_of_hop(n)[None], model.normalize(out[f0 - p : f0])[None], []

        def denoise(x, t):
            x0 = step.guided(x, torch.full((1,), t), feats, emotion, intensity, torch.tensor([guidance_scale]), 1.0,
                             coarse=coarse)
            raw[:] = [x0[:, p - 1 : p]]
            return torch.cat([known, x0[:, p:]], 1)

        x0 = sample_ddim(denoise, noise[f0 - p : f0 + h + la][None], step.timesteps, step.schedule)
        new = x0[:, p : p + h] + (known[:, -1:] - raw[0]) * step.join_decay
        out[f0 : f0 + h] = torch.clamp(model.denormalize(new[0]), 0, 1)
        n += 1
    return out[:num_frames].numpy()


def run(corpus: str, encoder_contexts_s, limit: int, seed: int = 0, guidance_scale: float = 1.5,
        past_frames: int = 8, model_path=None) -> list[dict]:
    import torch

    from cafetalk_rt.backends.streaming_contract import StreamingLayout
    from cafetalk_rt.backends.torch_backend import TorchBackend
    from cafetalk_rt.blendshapes import INDEX, MOUTH_IDX
    from cafetalk_rt.control.emotions import emotion_index
    from cafetalk_rt.model_files import DEFAULT_MODEL
    from cafetalk_rt.nn.streaming import StreamingStep
    from train.corpus.format import load_clip, read_manifest
    from train.streaming import stream_windows, window_features

    from cafetalk_rt.options import AnimateOptions
    from cafetalk_rt.pipeline import Animator

    model_path = model_path or DEFAULT_MODEL
    backend = TorchBackend(model_path)
    clips = [e for e in read_manifest(corpus) if e["split"] == "test"][:limit]
    animator, scores = Animator(model_path, backend="torch"), []
    for e in clips:  # the offline reference (whole clip, K = 2)
        audio, true, _ = load_clip(corpus, e)
        pred = animator.animate(audio, AnimateOptions(seed=seed, num_inference_steps=2, emotion=e["emotion"],
                                                      intensity=int(e["intensity"]))).blendshapes
        p0 = past_frames  # the live rows start once the past window is full
        scores.append((np.abs(pred[p0:, MOUTH_IDX] - true[p0:, MOUTH_IDX]).mean(),
                       np.corrcoef(pred[p0:, INDEX["jawOpen"]], true[p0:, INDEX["jawOpen"]])[0, 1]))
    rows = [{"features": "offline (whole clip)", "encoder_context_s": None, "mouth_mae": float(np.mean([x[0] for x in scores])),
             "jaw_corr": float(np.mean([x[1] for x in scores])), "clips": len(scores)}]
    print(json.dumps(rows[-1]), flush=True)
    settings = [("live window, whole-clip features", None)] + [(f"live features, encoder context {e:g} s", e) for e in encoder_contexts_s]
    for name, context_s in settings:
        layout = StreamingLayout(encoder_context_frames=round(25 * (context_s or 1.0)), past_frames=past_frames)
        step = StreamingStep(backend.encoder, backend.model, backend.schedule, layout)
        scores = []
        for e in clips:
            audio, true, _ = load_clip(corpus, e)
            t = len(true)
            noise = torch.from_numpy(np.random.default_rng(seed).standard_normal((t + 40, 52), dtype=np.float32))
            with torch.inference_mode():
                if context_s is None:
                    whole = torch.from_numpy(backend.encode(audio))

                    def feats(n, whole=whole):
                        f0 = n * layout.hop_frames - layout.lookahead_frames
                        f = whole[2 * (f0 - layout.past_frames) : 2 * (f0 + layout.hop_frames + layout.lookahead_frames)]
                        need = 2 * layout.window_frames
                        return torch.cat([f, f[-1:].repeat(need - f.shape[0], 1)]) if f.shape[0] < need else f
                else:
                    w = torch.from_numpy(stream_windows(audio, layout))
                    fresh = torch.cat([step._encode(w[i : i + 64]) for i in range(0, len(w), 64)])
                    fresh = fresh[:, 2 * layout.encoder_context_frames:].numpy()

                    def feats(n, fresh=fresh):
                        return torch.from_numpy(window_features(fresh, n, layout))

                pred = _stream_clip(step, feats, t, noise, torch.tensor([emotion_index(e["emotion"])]),
                                    torch.tensor([float(e["intensity"])]), guidance_scale)
            p0 = past_frames
            err = np.abs(pred[p0:, MOUTH_IDX] - true[p0:t, MOUTH_IDX]).mean()
            corr = np.corrcoef(pred[p0:, INDEX["jawOpen"]], true[p0:t, INDEX["jawOpen"]])[0, 1]
            scores.append((err, corr))
        rows.append({"features": name, "encoder_context_s": context_s, "mouth_mae": float(np.mean([s[0] for s in scores])),
                     "jaw_corr": float(np.mean([s[1] for s in scores])), "clips": len(scores)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.live_features", description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True, help="corpus with a test split (python -m train.corpus generate)")
    ap.add_argument("--encoder-context-s", type=float, nargs="*", default=[0.4, 1.0, 2.0, 3.0])
    ap.add_argument("--past-frames", type=int, default=8)
    ap.add_argument("--model", default=None, help="denoiser checkpoint (default: the shipped model)")
    ap.add_argument("--limit", type=int, default=10, help="held-out clips")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    rows = run(args.corpus, args.encoder_context_s, args.limit, past_frames=args.past_frames, model_path=args.model)
    result = {"model": args.model or "shipped", "past_frames": args.past_frames,
              "what": "live hop (0.16 s look-ahead, K=2) with whole-clip vs live speech features, "
                      "held-out TTS vs exact ground truth, frames after the first past_frames",
              "date": date.today().isoformat(), "rows": rows}
    write_result(result, "live-features", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
