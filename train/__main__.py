"""``python -m train {features,stream-features,fit,fit-adapter,fit-stream-encoder,evaluate,evaluate-au}``:
cache speech features, train (stage 1), train the fine-control adapter (stage 2), distil the live
stream's speech-encoder adapter, evaluate.

The corpus itself is made by ``python -m train.corpus generate``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys


def _fit_parser(sub, name: str = "fit", help: str = "train a denoiser (torchrun-compatible)", config_cls=None) -> None:
    from train.loop import TrainConfig

    p = sub.add_parser(name, help=help)
    for f in dataclasses.fields(config_cls or TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.default is dataclasses.MISSING:
            p.add_argument(flag, required=True, type=f.type if callable(f.type) else str)
        else:
            p.add_argument(flag, default=f.default, type=type(f.default))
    p.add_argument("--resume", action="store_true", help="continue the run in --out")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    pf = sub.add_parser("features", help="cache speech-encoder features for a corpus")
    pf.add_argument("--corpus", required=True)
    pf.add_argument("--encoder", default="whisper-tiny.en")
    pf.add_argument("--batch-size", type=int, default=16)
    ps = sub.add_parser("stream-features", help="cache speech features as live streams compute them (every hop)")
    ps.add_argument("--corpus", required=True)
    ps.add_argument("--lookahead-frames", type=int, nargs="+", default=[4], help="look-ahead(s) in 25 fps frames")
    _fit_parser(sub)
    from train.stage2 import Stage2Config

    _fit_parser(sub, "fit-adapter", "stage 2: train the fine-control (AU) adapter on a frozen stage-1 model",
                Stage2Config)
    from train.stream_encoder import StreamEncoderConfig

    _fit_parser(sub, "fit-stream-encoder", "distil the live stream's speech-encoder adapter (short right context)",
                StreamEncoderConfig)
    pe = sub.add_parser("evaluate", help="held-out lip-sync metrics of a checkpoint")
    pe.add_argument("--corpus", required=True)
    pe.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    pe.add_argument("--split", default="test")
    pe.add_argument("--num-inference-steps", type=int, nargs="+", default=[10])
    pe.add_argument("--limit", type=int, default=64)
    pe.add_argument("--samplers", nargs="+", default=["ddim"], help="ddim, dpmpp_2m, ddpm")
    pe.add_argument("--guidance-scale", type=float, default=1.5)
    pe.add_argument("--reference", action="store_true", help="also compare with DDPM-1000 (slow)")
    pe.add_argument("--with-demo-clip", action="store_true",
                    help="add the bundled real clip (scored against the reference only)")
    pe.add_argument("--json", default=None, help="also write the results here")
    pa = sub.add_parser("evaluate-au", help="fine control: per-AU response, lip metrics with/without control")
    pa.add_argument("--corpus", required=True)
    pa.add_argument("--model", default=None, help="checkpoint with an adapter (default: the shipped model)")
    pa.add_argument("--limit", type=int, default=8, help="test clips for the lip metrics")
    pa.add_argument("--au-guidance-scale", type=float, default=None)
    pa.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.cmd == "features":
        from train.features import cache_features

        print(f"wrote {cache_features(args.corpus, args.encoder, batch_size=args.batch_size)} feature files")
    elif args.cmd == "stream-features":
        from cafetalk_rt.backends.streaming_contract import StreamingLayout
        from train.streaming import cache_stream_features

        layouts = [StreamingLayout(lookahead_frames=la) for la in args.lookahead_frames]
        print(f"wrote {cache_stream_features(args.corpus, layouts)} streaming feature files")
    elif args.cmd == "fit":
        from train.loop import TrainConfig, fit

        kw = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
        print(f"checkpoint: {fit(TrainConfig(**kw), resume=args.resume)}")
    elif args.cmd == "fit-adapter":
        from train.stage2 import Stage2Config, fit_adapter

        kw = {f.name: getattr(args, f.name) for f in dataclasses.fields(Stage2Config)}
        print(f"checkpoint: {fit_adapter(Stage2Config(**kw), resume=args.resume)}")
    elif args.cmd == "fit-stream-encoder":
        from train.stream_encoder import StreamEncoderConfig, fit_stream_encoder

        kw = {f.name: getattr(args, f.name) for f in dataclasses.fields(StreamEncoderConfig)}
        print(f"checkpoint: {fit_stream_encoder(StreamEncoderConfig(**kw), resume=args.resume)}")
    elif args.cmd == "evaluate-au":
        from cafetalk_rt.audio import load_audio
        from cafetalk_rt.options import AnimateOptions
        from cafetalk_rt.pipeline import DEMO_CLIP, Animator
        from train.evaluate import _clips
        from train.evaluate_au import report

        opts = AnimateOptions() if args.au_guidance_scale is None else AnimateOptions(au_guidance_scale=args.au_guidance_scale)
        clips = [(audio, true) for e, audio, true, fps in _clips(args.corpus, "test", 10_000)
                 if fps == 25 and e["emotion"] == "neutral"][: args.limit]  # neutral: the prompt matches
        res = report(Animator(args.model, backend="torch"), load_audio(DEMO_CLIP), clips, opts)
        print(json.dumps(res, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=2)
    elif args.cmd == "evaluate":
        from train.evaluate import evaluate

        extra = None
        if args.with_demo_clip:
            from cafetalk_rt.audio import load_audio
            from cafetalk_rt.pipeline import DEMO_CLIP

            extra = {DEMO_CLIP.name: load_audio(DEMO_CLIP)}
        res = evaluate(args.corpus, args.model, split=args.split, steps=args.num_inference_steps, limit=args.limit,
                       samplers=args.samplers, guidance_scale=args.guidance_scale, reference=args.reference,
                       extra_audio=extra)
        print(json.dumps(res, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
