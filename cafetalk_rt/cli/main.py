"""``cafetalk-rt``: the command-line interface. It parses flags into option dataclasses and
calls the library; it holds no maths."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from pathlib import Path

from cafetalk_rt.control.emotions import EMOTIONS
from cafetalk_rt.errors import CafeTalkError
from cafetalk_rt.frames import SUPPORTED_FPS
from cafetalk_rt.diffusion.samplers import SAMPLERS

log = logging.getLogger("cafetalk_rt")


def _animate_parser(sub) -> None:
    from cafetalk_rt.options import AnimateOptions

    d = AnimateOptions()
    p = sub.add_parser("animate", help="speech audio → ARKit blendshape animation",
                       description="Animate a speech recording. Output type follows the extension: "
                                   ".npz (arrays blendshapes, names, fps), .csv (Live Link Face), .json (three.js).")
    p.add_argument("input", nargs="+",
                   help="speech audio file (wav, flac, ogg, mp3 where libsndfile reads it); several files or "
                        "folders make a batch job")
    p.add_argument("-o", "--output", required=True,
                   help="output .npz, .csv or .json; for a batch job a folder (created if missing)")
    p.add_argument("--format", default="npz", choices=("npz", "csv", "json"),
                   help="batch jobs: output type of every file (default npz)")
    p.add_argument("--recursive", action="store_true", help="batch jobs: also search sub-folders of input folders")
    p.add_argument("--skip-existing", action="store_true",
                   help="batch jobs: keep outputs that already exist and animate only the rest")
    p.add_argument("--emotion", default=d.emotion, help=f"one of: {', '.join(EMOTIONS)} (default {d.emotion})")
    p.add_argument("--intensity", type=int, default=d.intensity, choices=(1, 2, 3))
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-blinks", dest="blinks", action="store_false",
                   help="leave out the seeded procedural blinks (docs/blinks.md); the eyes then move only with "
                        "emotion and AU control")
    p.add_argument("--num-inference-steps", type=int, default=d.num_inference_steps, metavar="K",
                   help=f"denoising steps (default {d.num_inference_steps}, chosen from the quality-vs-steps table in "
                        "docs/quality.md; 1-2 for the lowest latency, 1000 with --sampler ddpm for the paper-style reference)")
    p.add_argument("--guidance-scale", type=float, default=d.guidance_scale,
                   help="CFG scale of the emotion condition (1 = off)")
    p.add_argument("--audio-guidance-scale", type=float, default=d.audio_guidance_scale,
                   help="CFG scale of the audio condition (1 = off)")
    p.add_argument("--sampler", default=d.sampler, choices=tuple(SAMPLERS),
                   help="ddim or dpmpp_2m (few steps), ddpm (ancestral; 1000 steps = the paper-style reference)")
    p.add_argument("--fps", type=int, default=d.fps, choices=SUPPORTED_FPS)
    p.add_argument("--au", default="", metavar="SPANS",
                   help='fine-grained control: action units with time spans, e.g. "AU12=0.8@1.0-2.5,AU1=1.0@3-4" '
                        "(AU<n>=<intensity 0..1>@<start_s>-<end_s>; docs/control.md lists the AUs)")
    p.add_argument("--au-guidance-scale", type=float, default=d.au_guidance_scale,
                   help="guidance scale of the AU condition inside its spans (0 = off, 1 = plain conditional)")
    p.add_argument("--instruction", default=None, metavar="TEXT",
                   help='free-text fine control, e.g. "smile broadly from 2 to 3 seconds" (times: "from 2 to 3 s", '
                        '"at the start/end", "in the middle", "for the last second", "throughout"; see docs/control.md '
                        '"Text instructions"); its AU spans are added to --au')
    p.add_argument("--instruction-detector", default=None, metavar="PATH",
                   help="text → AU detector checkpoint for --instruction (default: the shipped one)")
    p.add_argument("--text-encoder", default=None, metavar="SPEC",
                   help="text encoder of the detector: minilm (default), hf:/dir or clip:/dir "
                        "(a detector trained for that encoder: python -m train.instructions --text-encoder SPEC)")
    p.add_argument("--model", default=None, help="denoiser checkpoint (default: the shipped model)")
    from cafetalk_rt.backends import BACKENDS, DEFAULT_BACKEND

    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS,
                   help=f"engine (default {DEFAULT_BACKEND}: the shipped ONNX graphs, no torch needed; torch and "
                        "torch_cudagraph need the [torch] extra; tensorrt needs TensorRT and a GPU)")
    p.add_argument("--device", default="cpu", help="cpu, or cuda[:N] (torch backends, onnxruntime-gpu, tensorrt)")
    p.add_argument("--plot", default=None, metavar="PNG", help="also draw waveform + main curves")
    p.add_argument("--preview", default=None, metavar="OUT.mp4|OUT.html",
                   help="also write a face preview with the speech (as `cafetalk-rt preview`)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    from cafetalk_rt.cli.preview import add_preview_options

    add_preview_options(p)
    p.set_defaults(func=_animate)


def _options(args):
    from cafetalk_rt.options import AnimateOptions

    return AnimateOptions(emotion=args.emotion, intensity=args.intensity, seed=args.seed,
                          num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
                          audio_guidance_scale=args.audio_guidance_scale, sampler=args.sampler, fps=args.fps,
                          au_spans=args.au, au_guidance_scale=args.au_guidance_scale, instruction=args.instruction,
                          blinks=args.blinks)


def _is_batch(args) -> bool:
    return len(args.input) > 1 or Path(args.input[0]).is_dir()


def _animate(args) -> int:
    if _is_batch(args):
        return _animate_batch(args)
    from cafetalk_rt.audio import load_audio
    from cafetalk_rt.options import animation_metadata
    from cafetalk_rt.pipeline import Animator
    from cafetalk_rt.errors import InputError
    from cafetalk_rt.writers import SUPPORTED_EXTENSIONS, check_output_path, save_animation

    args.input = args.input[0]
    options = _options(args)
    check_output_path(args.output, overwrite=args.overwrite)  # fail before the slow part
    if Path(args.output).suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise InputError(f"unsupported output extension in {args.output!r}; use one of {', '.join(SUPPORTED_EXTENSIONS)}")
    if args.plot:
        if Path(args.plot).suffix.lower() != ".png":
            raise InputError(f"--plot takes a .png path, got {args.plot!r}")
        check_output_path(args.plot, overwrite=args.overwrite)
        from cafetalk_rt.preview.plot import require_matplotlib

        require_matplotlib()
    if args.preview:
        from cafetalk_rt.cli.preview import options_from_args
        from cafetalk_rt.preview.render import check_preview_path

        check_preview_path(args.preview, overwrite=args.overwrite)
        preview_options = options_from_args(args)
    audio = load_audio(args.input)
    detector = _instruction_detector(args, options, audio)  # reads the instruction before the slow part
    t0 = time.perf_counter()
    animator = Animator(args.model, backend=args.backend, device=args.device, instruction_detector=detector)
    t1 = time.perf_counter()
    anim = animator.animate(audio, options, name=args.input, prepared=True)
    t2 = time.perf_counter()
    path = save_animation(args.output, anim.blendshapes, anim.fps, overwrite=args.overwrite,
                          metadata=animation_metadata(options, animator.model_path, args.input, au=args.au))
    print(f"{path}: {anim.num_frames} frames at {anim.fps:g} fps ({anim.duration_s:.2f} s of audio); "
          f"model load {t1 - t0:.2f} s, animate {t2 - t1:.2f} s (rtf {(t2 - t1) / anim.duration_s:.3f})")
    if args.plot:
        from cafetalk_rt.preview.plot import plot_animation

        plot_animation(args.plot, audio, anim.blendshapes, anim.fps, title=Path(args.input).name, overwrite=args.overwrite)
        print(f"{args.plot}: plot written")
    if args.preview:
        from cafetalk_rt.cli.preview import print_result
        from cafetalk_rt.preview.render import render_preview

        print_result(render_preview(args.preview, audio, anim.blendshapes, anim.fps, label=Path(args.output).name,
                                    options=preview_options, overwrite=args.overwrite, audio_name=str(args.input)))
    return 0


def _animate_batch(args) -> int:
    """Several inputs or folders → one output per file in the folder ``-o`` (cafetalk_rt.cli.batch).
    Exit status 0 when every file was written, 1 when some failed (they are listed)."""
    from cafetalk_rt.audio import load_audio
    from cafetalk_rt.cli.batch import collect_inputs, plan_outputs, run_batch, summary
    from cafetalk_rt.errors import InputError
    from cafetalk_rt.options import animation_metadata
    from cafetalk_rt.pipeline import Animator
    from cafetalk_rt.writers import save_animation

    if args.plot or args.preview:
        raise InputError("--plot and --preview take one input; for a batch job render previews afterwards with "
                         "`cafetalk-rt preview OUT/<name>.npz --audio <name>.wav -o <name>.mp4`")
    options = _options(args)
    jobs, kept = plan_outputs(collect_inputs(args.input, recursive=args.recursive), args.output, "." + args.format,
                              roots=args.input, overwrite=args.overwrite, skip_existing=args.skip_existing)
    animator = Animator(args.model, backend=args.backend, device=args.device,
                        instruction_detector=_chosen_detector(args, options))

    def animate_one(job) -> float:
        anim = animator.animate(load_audio(job.input), options, name=str(job.input), prepared=True)
        job.output.parent.mkdir(parents=True, exist_ok=True)
        save_animation(job.output, anim.blendshapes, anim.fps, overwrite=args.overwrite,
                       metadata=animation_metadata(options, animator.model_path, job.input, au=args.au))
        return anim.duration_s

    results = run_batch(jobs, animate_one, progress=sys.stderr.isatty())
    print(summary(results, kept))
    return 0 if all(r.error is None for r in results) else 1


def _chosen_detector(args, options):
    """The detector named by --instruction-detector / --text-encoder, loaded; None when no
    instruction is given or neither flag is (the shipped detector is then used)."""
    if not (options.instruction and (args.instruction_detector or args.text_encoder)):
        return None
    from cafetalk_rt.control.instructions import InstructionDetector

    return InstructionDetector.load(args.instruction_detector, text_encoder=args.text_encoder)


def _instruction_detector(args, options, audio):
    """The text → AU detector for ``--instruction`` (None without one); prints the AU spans the
    instruction becomes, so a bad instruction fails before the model loads."""
    if not options.instruction:
        return None
    from cafetalk_rt.frames import SAMPLE_RATE
    from cafetalk_rt.control.instructions import default_detector, format_spans, instruction_to_spans

    detector = _chosen_detector(args, options) or default_detector()
    spans = instruction_to_spans(options.instruction, audio.shape[0] / SAMPLE_RATE, detector=detector)
    print(f"instruction → --au \"{format_spans(spans)}\"")
    return detector


#: Modules that add a subcommand: each has ``register(sub)`` which calls ``sub.add_parser(...)``
#: and ``set_defaults(func=run)`` with ``run(args) -> int``.
SUBCOMMAND_MODULES: tuple[str, ...] = ("cafetalk_rt.cli.preview", "cafetalk_rt.cli.export", "cafetalk_rt.cli.stream",
                                       "cafetalk_rt.cli.serve")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cafetalk-rt`` console script; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(prog="cafetalk-rt", description="Fast Cafe-Talk speech-to-face animation")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _animate_parser(sub)
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(sub)
    args = ap.parse_args(argv)
    try:
        return int(args.func(args))
    except (CafeTalkError, FileNotFoundError, FileExistsError, ValueError, ImportError) as e:
        print(f"cafetalk-rt: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
