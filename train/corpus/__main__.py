"""``python -m train.corpus {generate,relabel,import-livelink,summary}``: build and inspect a corpus.

    python -m train.corpus generate --out data/corpus --hours 2 --seed 0 --workers 2 [--fps 25]
    python -m train.corpus relabel data/corpus
    python -m train.corpus import-livelink take.csv take.wav --out data/corpus --emotion happy --intensity 2
    python -m train.corpus summary data/corpus
"""
from __future__ import annotations

import argparse
import json
import logging
import sys


def _parser() -> argparse.ArgumentParser:
    from cafetalk_rt.control.emotions import EMOTIONS

    ap = argparse.ArgumentParser(prog="python -m train.corpus", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="generate TTS clips (resumable; never deletes anything)")
    g.add_argument("--out", required=True, help="corpus directory")
    g.add_argument("--hours", type=float, default=2.0, help="hours of speech for this seed")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--workers", type=int, default=2, help="worker processes")
    g.add_argument("--fps", type=int, default=25, choices=(25, 30))
    g.add_argument("--piper-share", type=float, default=0.5, help="fraction of clips spoken by Piper")
    g.add_argument("--kokoro-share", type=float, default=0.0,
                   help="fraction of clips spoken by Kokoro-82M (28 English voices and blends; builds its assets once)")
    r = sub.add_parser("relabel", help="redraw generated clips' faces with phrase ends trimmed to the voice "
                                       "(train.corpus.pauses); keeps the originals in motion_orig/")
    r.add_argument("corpus")
    r.add_argument("--shares", nargs="+", default=None, metavar="PIPER:KOKORO",
                   help="the generator's --piper-share:--kokoro-share settings the corpus was made with, to "
                        "recover face seeds of clips older than this command (default: 0.5:0.0 0.05:0.85)")
    li = sub.add_parser("import-livelink", help="add a Live Link Face capture (CSV + audio) to a corpus")
    li.add_argument("csv")
    li.add_argument("wav")
    li.add_argument("--out", required=True, help="corpus directory")
    li.add_argument("--emotion", default="neutral", choices=EMOTIONS)
    li.add_argument("--intensity", type=int, default=1, choices=(1, 2, 3))
    li.add_argument("--fps", type=int, default=25, choices=(25, 30), help="fps of the stored curves")
    li.add_argument("--capture-fps", type=float, default=None,
                    help="rate of the CSV rows (default: inferred from the timecodes)")
    li.add_argument("--id", default=None, help="clip id (default: cap_<csv name>)")
    li.add_argument("--split", default="train", choices=("train", "val", "test"))
    li.add_argument("--text", default="", help="transcript, if known")
    s = sub.add_parser("summary", help="hours / clips / voices per split of a corpus")
    s.add_argument("corpus")
    return ap


def _print_summary(stats: dict) -> None:
    for split, v in stats["splits"].items():
        print(f"{split:>5}: {v['hours']:.3f} h, {v['clips']} clips, {v['voices']} voices")
    print(f"total: {stats['hours']:.3f} h, {stats['clips']} clips; test voices unseen in train: "
          f"{len(stats['test_voices_unseen_in_train'])}")


def _share_pair(text: str) -> tuple[float, float]:
    try:
        piper, kokoro = (float(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"--shares takes PIPER:KOKORO pairs such as 0.5:0.0, got {text!r}") from None
    return piper, kokoro


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "generate":
            from train.corpus.generate import GenerateOptions, generate

            opts = GenerateOptions(out=args.out, hours=args.hours, seed=args.seed, workers=args.workers,
                                   fps=args.fps, piper_share=args.piper_share, kokoro_share=args.kokoro_share)
            stats = generate(opts, progress=lambda have, want: print(
                f"\r{have / 3600:.3f} / {want / 3600:.3f} h", end="", file=sys.stderr, flush=True))
            print(file=sys.stderr)
            _print_summary(stats)
            print(f"this run: {stats['new_clips']} new clips, {stats['new_audio_s'] / 3600:.3f} h of audio in "
                  f"{stats['wall_s']:.0f} s = {stats['audio_s_per_s']} s of audio per second "
                  f"({args.workers} workers)")
        elif args.cmd == "relabel":
            from train.corpus.relabel import DEFAULT_SHARES, relabel

            shares = DEFAULT_SHARES if args.shares is None else tuple(_share_pair(x) for x in args.shares)
            counts = relabel(args.corpus, shares, progress=lambda i, n: print(
                f"\r{i} / {n} clips", end="", file=sys.stderr, flush=True))
            print(file=sys.stderr)
            print(json.dumps(counts))
            if counts.get("unverified"):
                print(f"warning: {counts['unverified']} clips kept their labels: no face seed reproduces their "
                      "stored curves (pass the generator's shares with --shares)", file=sys.stderr)
        elif args.cmd == "import-livelink":
            from train.corpus.livelink import import_livelink

            entry = import_livelink(args.csv, args.wav, args.out, fps=args.fps, capture_fps=args.capture_fps,
                                    emotion=args.emotion, intensity=args.intensity, clip_id=args.id,
                                    split=args.split, text=args.text)
            print(json.dumps(entry))
        else:
            from train.corpus.format import read_manifest
            from train.corpus.generate import summarize

            stats = summarize(read_manifest(args.corpus))
            _print_summary(stats)
            print(json.dumps(stats["emotion_intensity_clips"]))
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
