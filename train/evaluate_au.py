"""Fine-control evaluation: per-AU response inside vs outside its span, the rest of the face
against the uncontrolled result, lip metrics with and without control, and the effect of the
fine guidance scale β (Eq. 6).

Definitions (blendshape units, at 25 fps):
* ``inside``: mean of the AU's ARKit channels over the frames whose centre lies in the span;
* ``outside``: the same over frames more than ``guard_s`` away from the span (the condition's
  onset and offset ramps are left out);
* ``ratio`` = inside / max(outside, 0.01) and ``margin`` = inside − outside;
* ``rest_mae``: mean |controlled − uncontrolled| over all frames and every channel the AU does
  not drive; ``rest_max``: the largest per-channel mean of the same;
* lip metrics: ``train.evaluate.lip_metrics`` against ground truth (corpus clips) or against
  the uncontrolled result (clips without ground truth).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from cafetalk_rt.control.au import ACTION_UNITS, AU_NAMES, AUSpan, au_channel_indices
from cafetalk_rt.frames import frame_times
from cafetalk_rt.options import AnimateOptions

#: The span the per-AU checks use on a clip of ``duration_s``: its middle 40 %.
SPAN_FRACTION = (0.3, 0.7)


def middle_span(duration_s: float) -> tuple[float, float]:
    """(start_s, end_s) of the checked span: the middle 40 % of the clip."""
    return round(duration_s * SPAN_FRACTION[0], 2), round(duration_s * SPAN_FRACTION[1], 2)


def au_response(controlled: np.ndarray, uncontrolled: np.ndarray, au: str, span: tuple[float, float],
                fps: float = 25.0, guard_s: float = 0.2) -> dict[str, float]:
    """Metrics of one controlled clip (T, 52) against its uncontrolled twin (module doc)."""
    ch = au_channel_indices(au)
    t = frame_times(controlled.shape[0], fps)
    inside = (t >= span[0]) & (t < span[1])
    outside = (t < span[0] - guard_s) | (t >= span[1] + guard_s)
    rest = np.setdiff1d(np.arange(controlled.shape[1]), ch)
    diff = np.abs(controlled - uncontrolled)[:, rest].mean(axis=0)  # (C_rest,)
    inn, out = float(controlled[inside][:, ch].mean()), float(controlled[outside][:, ch].mean())
    return {"inside": inn, "outside": out, "ratio": inn / max(out, 0.01), "margin": inn - out,
            "uncontrolled_inside": float(uncontrolled[inside][:, ch].mean()),
            "rest_mae": float(diff.mean()), "rest_max": float(diff.max())}


def control_options(base: AnimateOptions, au: str, span, intensity: float = 1.0,
                    au_guidance_scale: float | None = None) -> AnimateOptions:
    """``base`` with one AU span added (and optionally another β)."""
    beta = base.au_guidance_scale if au_guidance_scale is None else au_guidance_scale
    return replace(base, au_spans=(AUSpan(au, intensity, *span),), au_guidance_scale=beta)


def evaluate_aus(animator, audio: np.ndarray, options: AnimateOptions | None = None,
                 aus=AU_NAMES) -> dict[str, dict[str, float]]:
    """Per-AU response on one clip (16 kHz): {au: au_response(...)} plus ``"_span"``. The default
    options leave out the seeded blink layer (``cafetalk_rt.blinks``), so the eye AUs measure the
    control, not where the seed's blinks fall."""
    options = options or AnimateOptions(blinks=False)
    base = animator.animate(audio, options).blendshapes
    span = middle_span(audio.shape[0] / 16_000)
    out = {au: au_response(animator.animate(audio, control_options(options, au, span)).blendshapes, base, au, span,
                           options.fps) for au in aus}
    out["_span"] = {"start_s": span[0], "end_s": span[1]}
    return out


def lip_effect(animator, clips, aus, options: AnimateOptions | None = None) -> dict[str, dict[str, float]]:
    """Lip metrics averaged over ``clips`` [(audio, truth (T, 52) at 25 fps or None)] without control
    (``"none"``) and with each AU on the middle span. Without truth the uncontrolled output is
    the reference (then ``"none"`` scores perfectly by definition)."""
    from train.evaluate import lip_metrics

    options = options or AnimateOptions()
    rows: dict[str, list] = {"none": [], **{au: [] for au in aus}}
    for audio, truth in clips:
        base = animator.animate(audio, options).blendshapes
        ref = base if truth is None else truth
        rows["none"].append(lip_metrics(base, ref))
        span = middle_span(audio.shape[0] / 16_000)
        for au in aus:
            rows[au].append(lip_metrics(animator.animate(audio, control_options(options, au, span)).blendshapes, ref))
    return {k: {m: float(np.mean([r[m] for r in v])) for m in v[0]} for k, v in rows.items()}


def guidance_sweep(animator, audio: np.ndarray, au: str, scales=(0.0, 1.0, 2.0, 3.0),
                   options: AnimateOptions | None = None) -> list[float]:
    """Mean of the AU's channels inside the middle span for each β."""
    options = options or AnimateOptions()
    span = middle_span(audio.shape[0] / 16_000)
    t = frame_times(animator.animate(audio, options).num_frames, options.fps)
    inside = (t >= span[0]) & (t < span[1])
    ch = au_channel_indices(au)
    return [float(animator.animate(audio, control_options(options, au, span, au_guidance_scale=s))
                  .blendshapes[inside][:, ch].mean()) for s in scales]


def report(animator, demo_audio: np.ndarray, corpus_clips, options: AnimateOptions | None = None) -> dict:
    """Everything the README table needs: per-AU response on ``demo_audio``, lip metrics on
    ``corpus_clips`` for no control / each upper- and lower-face AU, β sweeps for AU12 and AU1."""
    options = options or AnimateOptions()
    return {"au_guidance_scale": options.au_guidance_scale,
            "response": evaluate_aus(animator, demo_audio, options),
            "lips": lip_effect(animator, corpus_clips, AU_NAMES, options),
            "regions": {au: ACTION_UNITS[au].region for au in AU_NAMES},
            "sweep": {au: guidance_sweep(animator, demo_audio, au, options=options) for au in ("AU12", "AU1", "AU26")}}
