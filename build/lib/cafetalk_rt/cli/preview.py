"""``cafetalk-rt preview``: watch an animation with its speech, as a video or a browser page.

    cafetalk-rt preview ANIMATION.npz --audio SPEECH.wav -o OUT.mp4|OUT.html [--compare OTHER.npz] [--overwrite]

The CLI parses flags into ``PreviewOptions`` and calls ``preview.render.preview_files``; the
``animate --preview`` shortcut calls ``print_result`` the same way after animating.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_preview_options(p: argparse.ArgumentParser) -> None:
    """The look options shared by ``preview`` and ``animate --preview``."""
    from cafetalk_rt.preview.render import PreviewOptions

    d = PreviewOptions()
    p.add_argument("--preview-size", type=int, default=d.size_px, metavar="PX",
                   help=f"face panel size in pixels, even (default {d.size_px}); the video adds a curve strip below")
    p.add_argument("--preview-crf", type=int, default=d.crf, metavar="CRF",
                   help=f"x264 quality of the .mp4, lower is better and bigger (default {d.crf})")


def options_from_args(args):
    """``PreviewOptions`` from parsed flags (raises InputError on bad values)."""
    from cafetalk_rt.preview.render import PreviewOptions

    return PreviewOptions(size_px=args.preview_size, crf=args.preview_crf)


def register(sub) -> None:
    """Add the ``preview`` subcommand to ``sub`` (an argparse subparsers object)."""
    p = sub.add_parser(
        "preview", help="animation + speech → face video with sound (.mp4) or browser page (.html)",
        description="Render a stylised face driven by the 52 ARKit channels, in sync with the speech. "
                    ".mp4: H.264 + AAC, curve strip with playhead under the face. .html: one self-contained "
                    "page (open it in any browser; page.html#t=1.5 opens at 1.5 s).")
    p.add_argument("animation", help="animation file (.npz, .csv Live Link Face, .json three.js)")
    p.add_argument("--audio", required=True, help="the speech the animation was made from (wav, flac, ogg, mp3)")
    p.add_argument("-o", "--output", required=True, help="OUT.mp4 (video with sound) or OUT.html (browser page)")
    p.add_argument("--compare", default=None, metavar="OTHER",
                   help="a second animation of the same speech, shown side by side")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_preview_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Render the preview; returns the exit status (errors propagate to ``cli.main``)."""
    from cafetalk_rt.preview.render import check_preview_path, preview_files

    check_preview_path(args.output, overwrite=args.overwrite)  # fail before reading anything
    result = preview_files(args.output, args.animation, args.audio, compare=args.compare,
                           options=options_from_args(args), overwrite=args.overwrite)
    print_result(result)
    return 0


def print_result(result) -> None:
    """One line: what was written, how big, how fast."""
    speed = (f"; rendered {result.render_fps:.0f} frames/s ({result.total_fps:.0f} frames/s with encoding)"
             if result.render_fps else "")
    print(f"{Path(result.path)}: {result.num_frames} frames at {result.fps:g} fps "
          f"({result.duration_s:.2f} s), {result.size_bytes / 1e3:.0f} kB in {result.seconds:.2f} s{speed}")
