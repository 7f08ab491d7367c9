"""Fine-grained control vocabulary: FACS action units (AUs), their ARKit channels, and AU spans.

Cafe-Talk (ICLR 2025, §3.3 "fine-grained control") conditions the stage-2 adapter on a per-frame
AU tensor. The paper does not publish its AU set or its ARKit→AU mapping; this table is our
choice. ``weight`` is the ARKit value (above rest) the channel reaches at AU intensity 1.0; it is
used in both directions: AU → ARKit offsets (training-time random AU events,
``train/binarize.py``) and ARKit → AU activation (``activation_from_blendshapes``, Algorithm 1).

======  =====================  ======  ===========================================================
AU      FACS name              region  ARKit channels (weight at intensity 1.0)
======  =====================  ======  ===========================================================
AU1     inner brow raiser      upper   browInnerUp .8
AU2     outer brow raiser      upper   browOuterUpLeft/Right .8
AU4     brow lowerer           upper   browDownLeft/Right .8
AU5     upper lid raiser       upper   eyeWideLeft/Right .7
AU6     cheek raiser           upper   cheekSquintLeft/Right .7
AU7     lid tightener          upper   eyeSquintLeft/Right .7
AU9     nose wrinkler          upper   noseSneerLeft/Right .7
AU10    upper lip raiser       lower   mouthUpperUpLeft/Right .6
AU12    lip corner puller      lower   mouthSmileLeft/Right .8
AU14    dimpler                lower   mouthDimpleLeft/Right .6
AU15    lip corner depressor   lower   mouthFrownLeft/Right .7
AU17    chin raiser            lower   mouthShrugLower .7, mouthShrugUpper .3
AU20    lip stretcher          lower   mouthStretchLeft/Right .6
AU23    lip tightener          lower   mouthRollLower .4, mouthRollUpper .4
AU24    lip pressor            lower   mouthPressLeft/Right .6
AU25    lips part              lower   mouthLowerDownLeft/Right .5, mouthUpperUpLeft/Right .2
AU26    jaw drop               lower   jawOpen .75
AU43    eyes closed            upper   eyeBlinkLeft/Right 1.0
======  =====================  ======  ===========================================================

Region is "upper" when the AU drives none of the jaw/mouth channels that speech drives
(``blendshapes.MOUTH_NAMES``). FACS lists AU9 among the lower-face actions; here it only drives
``noseSneer*`` (no mouth channel), so it counts as upper for the lip-sync guarantee. AU45 (blink)
is accepted as an alias of AU43: both close the lids; a short AU43 span is a blink.

The fine condition of one clip is ``au_intensity`` (T, n_AU) float32 in [0, 1] in
``AU_NAMES`` order plus ``au_mask`` (T,) bool marking the frames that carry an AU condition
(paper Eq. 6, Z); the guidance applies it per channel with ``region_channel_mask``. An intensity of 0 inside the mask means "no control on this AU", not "force
it off": training drops 80 % of AU entries, so a 0 is indistinguishable from a dropped entry.

Span syntax (``parse_au_spans``): comma- or semicolon-separated items ``AU<n>=<intensity>@<start>-<end>``
with seconds, e.g. ``"AU12=0.8@1.0-2.5,AU1=1.0@3-4"``; ``=<intensity>`` may be left out
(intensity 1.0), times may carry an ``s`` suffix. Overlapping spans of the same AU compose by max.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from cafetalk_rt.blendshapes import INDEX, MOUTH_IDX, MOUTH_NAMES, NUM_BLENDSHAPES, UPPER_FACE_IDX
from cafetalk_rt.errors import InputError
from cafetalk_rt.frames import frame_times


@dataclass(frozen=True)
class ActionUnit:
    """One FACS action unit: ``name`` ("AU12"), FACS ``facs_name``, ``region`` ("upper" /
    "lower") and its ARKit ``channels`` as ((arkit_name, weight), ...), weight = ARKit value at
    intensity 1.0."""
    name: str
    facs_name: str
    region: str
    channels: tuple[tuple[str, float], ...]


def _lr(stem: str, w: float) -> tuple[tuple[str, float], ...]:
    return ((f"{stem}Left", w), (f"{stem}Right", w))


_TABLE: tuple[tuple[str, str, tuple[tuple[str, float], ...]], ...] = (
    ("AU1", "inner brow raiser", (("browInnerUp", 0.8),)),
    ("AU2", "outer brow raiser", _lr("browOuterUp", 0.8)),
    ("AU4", "brow lowerer", _lr("browDown", 0.8)),
    ("AU5", "upper lid raiser", _lr("eyeWide", 0.7)),
    ("AU6", "cheek raiser", _lr("cheekSquint", 0.7)),
    ("AU7", "lid tightener", _lr("eyeSquint", 0.7)),
    ("AU9", "nose wrinkler", _lr("noseSneer", 0.7)),
    ("AU10", "upper lip raiser", _lr("mouthUpperUp", 0.6)),
    ("AU12", "lip corner puller", _lr("mouthSmile", 0.8)),
    ("AU14", "dimpler", _lr("mouthDimple", 0.6)),
    ("AU15", "lip corner depressor", _lr("mouthFrown", 0.7)),
    ("AU17", "chin raiser", (("mouthShrugLower", 0.7), ("mouthShrugUpper", 0.3))),
    ("AU20", "lip stretcher", _lr("mouthStretch", 0.6)),
    ("AU23", "lip tightener", (("mouthRollLower", 0.4), ("mouthRollUpper", 0.4))),
    ("AU24", "lip pressor", _lr("mouthPress", 0.6)),
    ("AU25", "lips part", _lr("mouthLowerDown", 0.5) + _lr("mouthUpperUp", 0.2)),
    ("AU26", "jaw drop", (("jawOpen", 0.75),)),
    ("AU43", "eyes closed", _lr("eyeBlink", 1.0)),
)


def _region(channels: tuple[tuple[str, float], ...]) -> str:
    return "lower" if any(name in MOUTH_NAMES for name, _ in channels) else "upper"


ACTION_UNITS: dict[str, ActionUnit] = {
    name: ActionUnit(name, facs, _region(ch), ch) for name, facs, ch in _TABLE
}
#: The n_AU axis of every AU tensor, in this fixed order.
AU_NAMES: tuple[str, ...] = tuple(name for name, _, _ in _TABLE)
NUM_AUS = len(AU_NAMES)
#: Accepted alternative spellings → vocabulary name.
AU_ALIASES: dict[str, str] = {"AU45": "AU43"}
UPPER_AUS: tuple[str, ...] = tuple(n for n in AU_NAMES if ACTION_UNITS[n].region == "upper")
LOWER_AUS: tuple[str, ...] = tuple(n for n in AU_NAMES if ACTION_UNITS[n].region == "lower")


def au_to_arkit_matrix() -> np.ndarray:
    """(n_AU, 52) float32: row ``k`` holds the ARKit weights of ``AU_NAMES[k]`` (0 elsewhere)."""
    m = np.zeros((NUM_AUS, NUM_BLENDSHAPES), np.float32)
    for k, name in enumerate(AU_NAMES):
        for ch, w in ACTION_UNITS[name].channels:
            m[k, INDEX[ch]] = w
    return m


def au_channel_indices(au: str) -> list[int]:
    """ARKit channel indices driven by ``au`` (a vocabulary name or alias)."""
    return [INDEX[ch] for ch, _ in ACTION_UNITS[au_name(au)].channels]


def activation_from_blendshapes(blendshapes: np.ndarray) -> np.ndarray:
    """Estimated AU activation (..., T, n_AU) float32 ≥ 0 from ARKit curves (..., T, 52): for each
    AU the mean over its channels of value / weight (so 1.0 ≈ the AU at full intensity)."""
    m = au_to_arkit_matrix()
    norm = (m > 0).sum(axis=1).astype(np.float32)                      # channels per AU
    inv = np.where(m > 0, 1.0 / np.maximum(m, 1e-6), 0.0).astype(np.float32)
    return (np.asarray(blendshapes, np.float32) @ inv.T) / norm        # (..., T, n_AU)


def region_matrix() -> np.ndarray:
    """(n_AU, 52) float32: row ``k`` is 1 on every channel of the face region of ``AU_NAMES[k]``
    (upper: ``blendshapes.UPPER_FACE_IDX``; lower: jaw and mouth, ``MOUTH_IDX``), 0 elsewhere.
    The one definition of the regions behind :func:`region_channel_mask`; the exported AU graphs
    carry it as a constant (``export/graphs.py``)."""
    m = np.zeros((NUM_AUS, NUM_BLENDSHAPES), np.float32)
    for k, name in enumerate(AU_NAMES):
        m[k, UPPER_FACE_IDX if ACTION_UNITS[name].region == "upper" else MOUTH_IDX] = 1.0
    return m


def _active(au: np.ndarray, au_mask: np.ndarray) -> np.ndarray:
    """(…, T, n_AU) float32: 1 where an AU has intensity > 0 at a frame inside ``au_mask``."""
    return ((np.asarray(au) > 0) & np.asarray(au_mask, bool)[..., None]).astype(np.float32)


def region_channel_mask(au: np.ndarray, au_mask: np.ndarray) -> np.ndarray:
    """Where the fine guidance term of Eq. 6 applies, per frame and channel: (…, T, 52) float32,
    1 on the channels of the face region (upper: brows, eyes, cheeks, nose; lower: jaw and
    mouth, ``blendshapes.MOUTH_NAMES``) of every AU active (intensity > 0) at a frame inside
    ``au_mask``. The paper's Z is per frame; restricting it to the AUs' regions is our choice, so
    that e.g. a brow raise cannot move the lips (measured: see docs/fine_control.md).

    Computed as min(1, active @ :func:`region_matrix`) with active = (au > 0) ∧ au_mask, the
    same arithmetic the exported AU graphs do.

    Args:
        au: (…, T, n_AU) float intensities; au_mask: (…, T) bool.
    """
    on = _active(au, au_mask)
    return np.minimum(on @ region_matrix(), 1.0)


def anchor_matrix() -> np.ndarray:
    """(n_AU, 52) float32: row ``k`` is 1 on the channels ``AU_NAMES[k]`` may change (its *anchor
    region*, :func:`region_anchor`): an upper-face AU's own ARKit channels; for a lower-face AU the
    jaw/mouth region (``MOUTH_IDX``) less the channels that OTHER lower-face AUs drive and this one
    does not (AU23 keeps its lip rolls and the unclaimed mouth channels: mouthClose, funnel,
    pucker, jaw sideways…, but not AU24's mouthPress); 0 elsewhere. The exported AU graphs carry
    it as a constant for the anchor (and :func:`region_matrix` for Z).

    Why (measured, docs/fine_control.md): with the whole region free a requested AU dragged in
    its corpus partners: upper face AU2 → browInnerUp +0.19, AU4 → noseSneer +0.18, AU9 → browDown
    +0.19; lower face AU23 → mouthPress +0.14 at K = 10 and +0.17 at K = 4 (the corpus pairs lip
    tightener and pressor). The unclaimed mouth channels stay free because they are physically
    coupled to the claimed ones (jawOpen vs mouthClose, lip roll vs funnel)."""
    m = np.zeros((NUM_AUS, NUM_BLENDSHAPES), np.float32)
    own = {name: {INDEX[ch] for ch, _ in ACTION_UNITS[name].channels} for name in AU_NAMES}
    for k, name in enumerate(AU_NAMES):
        if ACTION_UNITS[name].region == "upper":
            m[k, sorted(own[name])] = 1.0
        else:  # the mouth, less the channels other lower-face AUs own and this one does not
            others = set().union(*(own[o] for o in AU_NAMES if o != name and ACTION_UNITS[o].region == "lower"))
            m[k, sorted(set(MOUTH_IDX) - (others - own[name]))] = 1.0
    return m


def region_anchor(au: np.ndarray, au_mask: np.ndarray) -> np.ndarray:
    """Channels the fine control may change anywhere in a clip (anchoring,
    ``cafetalk_rt.diffusion.guidance.anchored_fine_denoiser``): (…, 1, 52) float32, the union of the anchor
    regions (:func:`anchor_matrix`) of every AU active (intensity > 0 inside ``au_mask``)
    somewhere in the clip; all other channels follow the uncontrolled trajectory exactly.
    Computed as max over T of min(1, active @ anchor_matrix()), as the exported AU graphs do.
    Args as :func:`region_channel_mask`."""
    on = _active(au, au_mask)
    return np.minimum(on @ anchor_matrix(), 1.0).max(axis=-2, keepdims=True)


def au_name(text: str) -> str:
    """Canonical vocabulary name of ``text`` ("au12", "AU 12", "AU45" → "AU12", …, "AU43").

    Raises:
        InputError: not an AU of the vocabulary, listing the accepted ones.
    """
    key = re.sub(r"\s+", "", str(text)).upper()
    key = AU_ALIASES.get(key, key)
    if key not in ACTION_UNITS:
        raise InputError(f"unknown action unit {text!r}; accepted: {', '.join(AU_NAMES)} "
                         f"(aliases: {', '.join(f'{a}={b}' for a, b in AU_ALIASES.items())})")
    return key


@dataclass(frozen=True)
class AUSpan:
    """One fine-grained control request: action unit ``au`` (vocabulary name) at ``intensity``
    in [0, 1] from ``start_s`` to ``end_s`` seconds (frames whose centre lies in
    [start_s, end_s) are controlled).

    Raises:
        InputError: unknown AU, intensity outside [0, 1], negative or empty time range.
    """
    au: str
    intensity: float
    start_s: float
    end_s: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "au", au_name(self.au))
        vals = (self.intensity, self.start_s, self.end_s)
        if not all(np.isfinite(float(v)) for v in vals):
            raise InputError(f"{self.au}: intensity and times must be finite numbers, got {vals}")
        if not 0.0 <= self.intensity <= 1.0:
            raise InputError(f"{self.au}: intensity must be in [0, 1], got {self.intensity}")
        if self.start_s < 0 or self.end_s <= self.start_s:
            raise InputError(f"{self.au}: need 0 <= start_s < end_s, got {self.start_s}-{self.end_s} s")


ACCEPTED_FORMS = ("AU<n>=<intensity 0..1>@<start_s>-<end_s>, e.g. AU12=0.8@1.0-2.5; "
                  "AU<n>@<start_s>-<end_s> means intensity 1.0; times may end in 's' (AU1@3s-4s); "
                  "separate items with ',' or ';'")
_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_ITEM = re.compile(rf"^(AU\s*\d+)\s*(?:=\s*{_NUM})?\s*@\s*{_NUM}\s*s?\s*-\s*{_NUM}\s*s?$", re.I)


def parse_au_spans(text: str) -> tuple[AUSpan, ...]:
    """Parse ``"AU12=0.8@1.0-2.5,AU1=1.0@3-4"`` into spans (input order kept). An empty or
    blank string gives ().

    Raises:
        InputError: an item that does not match, an unknown AU or a bad number; the message
            names the item and shows the accepted forms.
    """
    spans = []
    for item in re.split(r"[,;]", str(text)):
        item = item.strip()
        if not item:
            continue
        m = _ITEM.match(item)
        if m is None:
            raise InputError(f"cannot parse AU span {item!r}; accepted forms: {ACCEPTED_FORMS}; "
                             f"AUs: {', '.join(AU_NAMES)}")
        au, inten, start, end = m.groups()
        try:
            spans.append(AUSpan(au, float(inten) if inten else 1.0, float(start), float(end)))
        except InputError as e:
            raise InputError(f"bad AU span {item!r}: {e}; accepted forms: {ACCEPTED_FORMS}") from None
    return tuple(spans)


def span_frames(span: AUSpan, fps: float, num_frames: int) -> np.ndarray:
    """Bool (T,) of the frames whose centre (``frames.frame_times``) lies in [start_s, end_s)."""
    t = frame_times(num_frames, fps)
    return (t >= span.start_s) & (t < span.end_s)


def spans_to_condition(spans, num_frames: int, fps: float, duration_s: float,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The fine condition of one clip from AU spans (paper §3.3; mask Z of Eq. 6).

    Args:
        spans: iterable of ``AUSpan`` (or a span string for ``parse_au_spans``).
        num_frames: T animation frames; fps: frames per second; duration_s: audio length (s).

    Returns:
        ``au_intensity`` (T, n_AU) float32 in [0, 1] (``AU_NAMES`` order; overlapping spans of
        one AU compose by max) and ``au_mask`` (T,) bool (frames covered by any span).

    Raises:
        InputError: a span ending after ``duration_s`` (tolerance half a frame) or covering no
            frame centre.
    """
    if isinstance(spans, str):
        spans = parse_au_spans(spans)
    au = np.zeros((num_frames, NUM_AUS), np.float32)
    mask = np.zeros(num_frames, bool)
    for s in spans:
        if s.end_s > duration_s + 0.5 / fps:
            raise InputError(f"{s.au} span {s.start_s}-{s.end_s} s ends after the audio "
                             f"({duration_s:.3f} s); keep end_s <= {duration_s:.3f}")
        sel = span_frames(s, fps, num_frames)
        if not sel.any():
            raise InputError(f"{s.au} span {s.start_s}-{s.end_s} s covers no frame at {fps:g} fps; "
                             f"make it at least {1.0 / fps:.3f} s long")
        k = AU_NAMES.index(s.au)
        au[sel, k] = np.maximum(au[sel, k], s.intensity)
        mask |= sel
    return au, mask


@dataclass(frozen=True)
class AUCondition:
    """The fine (AU) condition of paper Eq. 6 at the model fps, as the backends take it.

    Attributes:
        au: (…, T, n_AU) float32 intensities in [0, 1], ``AU_NAMES`` order (0 = no control).
        au_mask: (…, T) bool, the frames of Z (covered by some span).
    Both are numpy arrays, or torch tensors inside the torch backends; a batch has a leading
    B axis, one clip none.
    """

    au: Any
    au_mask: Any

    @classmethod
    def from_spans(cls, spans, num_frames: int, fps: float, duration_s: float) -> "AUCondition":
        """One clip's condition (T, n_AU) / (T,) from AU spans (:func:`spans_to_condition`).

        Raises:
            InputError: as :func:`spans_to_condition`.
        """
        return cls(*spans_to_condition(spans, num_frames, fps, duration_s))

    @classmethod
    def stack(cls, conditions: "list[AUCondition]") -> "AUCondition":
        """Clips of one length → a batch: (B, T, n_AU) / (B, T)."""
        return cls(np.stack([c.au for c in conditions]), np.stack([c.au_mask for c in conditions]))

    def frames(self, start: int, stop: int) -> "AUCondition":
        """Frames ``[start, stop)`` of one clip's condition."""
        return AUCondition(self.au[start:stop], self.au_mask[start:stop])

    def region_mask(self) -> np.ndarray:
        """Z per frame and channel, (…, T, 52) float32 (:func:`region_channel_mask`)."""
        return region_channel_mask(self.au, self.au_mask)

    def anchor(self) -> np.ndarray:
        """The anchor region, (…, 1, 52) float32 (:func:`region_anchor`)."""
        return region_anchor(self.au, self.au_mask)
