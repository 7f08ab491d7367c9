"""Batch jobs: many audio files (or folders of them) animated with one loaded model.

:func:`collect_inputs` expands folders into audio files, :func:`plan_outputs` names one output per
input inside an output folder (checked before any work, so a name clash or an existing file
stops the job before the slow part), and :func:`run_batch` animates them in order with a
progress bar. A file that cannot be read or animated is reported and skipped; the others are
written. Within a file, long audio is cut into windows that are denoised in batches
(:mod:`cafetalk_rt.longform.offline`); windows of different files are not mixed in one call (on CPU one
window per call measured fastest, see docs/long_audio.md).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from cafetalk_rt.errors import CafeTalkError, InputError

#: Extensions picked up when a folder is given (files named explicitly are always tried).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64")


@dataclass(frozen=True)
class Job:
    """One input file and the output path it will be written to."""

    input: Path
    output: Path


@dataclass(frozen=True)
class JobResult:
    """Outcome of one job: ``error`` is None on success; ``seconds`` is wall time (load +
    animate + write); ``duration_s`` the audio length in seconds (0 when it failed to load)."""

    job: Job
    error: str | None
    seconds: float
    duration_s: float = 0.0


def collect_inputs(paths: Iterable[str | Path], *, recursive: bool = False) -> list[Path]:
    """Files given explicitly (in order) and the audio files of given folders (sorted).

    Raises:
        InputError: a path does not exist, or a folder holds no audio file (lists the
            extensions looked for, and suggests ``--recursive`` for nested folders).
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in (p.rglob("*") if recursive else p.iterdir())
                           if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                hint = "" if recursive else " (pass --recursive to search sub-folders)"
                raise InputError(f"folder {str(p)!r} holds no audio file ({', '.join(AUDIO_EXTENSIONS)}){hint}")
            out += found
        elif p.exists():
            out.append(p)
        else:
            raise InputError(f"input {str(p)!r} does not exist; check the path")
    return out


def _relative_name(path: Path, roots: list[Path]) -> Path:
    for root in roots:
        try:
            return path.relative_to(root)
        except ValueError:
            continue
    return Path(path.name)


def plan_outputs(inputs: list[Path], out_dir: str | Path, extension: str, *, roots: Iterable[str | Path] = (),
                 overwrite: bool = False, skip_existing: bool = False) -> tuple[list[Job], list[Job]]:
    """Name the outputs: ``out_dir/<stem><extension>``; files found under a folder in ``roots``
    keep their sub-folder path (``out_dir/<sub>/<stem><extension>``).

    Returns:
        (jobs to run, jobs skipped because their output exists and ``skip_existing``).
    Raises:
        InputError: ``out_dir`` is an existing file; two inputs would write the same output
            (names both); an output exists and neither ``overwrite`` nor ``skip_existing``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"with several inputs -o must be a folder, and {str(out_dir)!r} is a file")
    dirs = [Path(r) for r in roots if Path(r).is_dir()]
    jobs, seen = [], {}
    for p in inputs:
        target = out_dir / _relative_name(p, dirs).with_suffix(extension)
        if target in seen:
            raise InputError(f"{str(seen[target])!r} and {str(p)!r} would both be written to {str(target)!r}; "
                             "rename one or animate them in separate runs")
        seen[target] = p
        jobs.append(Job(p, target))
    existing = [j for j in jobs if j.output.exists()]
    if existing and not (overwrite or skip_existing):
        names = ", ".join(str(j.output) for j in existing[:3]) + (" …" if len(existing) > 3 else "")
        raise InputError(f"{len(existing)} output(s) already exist ({names}); pass --overwrite to replace them "
                         "or --skip-existing to keep them and animate only the rest")
    if skip_existing and not overwrite:
        return [j for j in jobs if not j.output.exists()], existing
    return jobs, []


def run_batch(jobs: list[Job], animate_one: Callable[[Job], float], *, progress: bool = True) -> list[JobResult]:
    """Run ``animate_one(job) -> audio duration in seconds`` for every job with a tqdm progress
    bar. Errors a user can act on (:class:`CafeTalkError`, ``OSError``, ``ValueError``) are caught
    per job and returned as that job's ``error``; anything else propagates (a bug)."""
    from tqdm import tqdm

    results = []
    bar = tqdm(jobs, desc="animate", unit="file", disable=not progress, dynamic_ncols=True)
    for job in bar:
        bar.set_postfix_str(job.input.name)
        t0 = time.perf_counter()
        try:
            duration = float(animate_one(job))
            results.append(JobResult(job, None, time.perf_counter() - t0, duration))
        except (CafeTalkError, OSError, ValueError) as e:
            results.append(JobResult(job, f"{type(e).__name__}: {e}", time.perf_counter() - t0))
            bar.write(f"skipped {job.input}: {e}")
    return results


def summary(results: list[JobResult], skipped: list[Job]) -> str:
    """One line per failure plus a totals line (files written, failed, kept; audio seconds;
    wall seconds; real-time factor)."""
    ok = [r for r in results if r.error is None]
    lines = [f"FAILED {r.job.input}: {r.error}" for r in results if r.error is not None]
    audio = sum(r.duration_s for r in ok)
    wall = sum(r.seconds for r in results)
    rtf = f", rtf {wall / audio:.3f}" if audio > 0 else ""
    lines.append(f"{len(ok)} written, {len(results) - len(ok)} failed, {len(skipped)} kept (existing); "
                 f"{audio:.1f} s of audio in {wall:.1f} s{rtf}")
    return "\n".join(lines)
