"""The preview face: which points exist, how each ARKit channel moves them, what is drawn.

Each ``_part(b)`` adds one feature to a ``RigBuilder``; displacements are in face units (the
face canvas is the unit square) at channel weight 1. ``s`` is the x sign of a side (see
``rig.SUBJECT_LEFT_X_SIGN``: the subject's left is on the viewer's right). Magnitudes are
chosen to read clearly at 256-384 px, not measured from a face.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from cafetalk_rt.preview.rig import COLORS, SIDES, SUBJECT_LEFT_X_SIGN, Rig, RigBuilder

#: Centre of the mouth and of each eye in face units (tests look for motion there).
MOUTH_CENTER = (0.5, 0.685)
MOUTH_HALF_WIDTH = 0.085
#: The mouth (lips, teeth, tongue, marks) is enlarged by this (x, y) factor: lip-sync is what
#: a preview is for.
MOUTH_SCALE = (1.2, 1.25)
EYE_CENTER_Y = 0.44
EYE_OFFSET_X = 0.13


@lru_cache(maxsize=1)
def face_rig() -> Rig:
    """The preview face (built once): about 500 points, 60 shapes, painter's order."""
    b = RigBuilder()
    for part in (_static, _head, _cheeks, _nose, _brows, _eyes, _mouth):
        part(b)
    return b.build()


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> "tuple[np.ndarray, np.ndarray]":
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return cx + rx * np.cos(a), cy + ry * np.sin(a)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _static(b: RigBuilder) -> None:
    """Background, hair, ears, neck and shirt: never move."""
    b.shape("hair_back", "polygon", b.add(*_ellipse(0.5, 0.40, 0.36, 0.36, 32)), "hair")
    b.shape("neck", "polygon", b.add([0.41, 0.59, 0.60, 0.40], [0.70, 0.70, 0.95, 0.95]), "shadow")
    b.shape("shirt", "polygon", b.add([0.12, 0.40, 0.5, 0.60, 0.88, 0.94, 0.06],
                                      [0.93, 0.88, 0.92, 0.88, 0.93, 1.01, 1.01]), "shirt")
    for s in (-1.0, 1.0):
        b.shape("ear", "polygon", b.add(*_ellipse(0.5 + s * 0.295, 0.49, 0.035, 0.065, 16)), "skin")


def _head(b: RigBuilder) -> None:
    """Face contour: jaw drops and swings, cheeks puff."""
    phi = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    s, c = np.sin(phi), np.cos(phi)
    lower = np.maximum(0, -c)
    x = 0.5 + 0.29 * np.sign(s) * np.abs(s) ** (1 - 0.3 * lower) * (1 - 0.2 * lower ** 2)
    y = 0.47 - np.where(c > 0, 0.35, 0.39) * c
    idx = b.add(x, y)
    ramp = _smoothstep((y - 0.56) / (0.87 - 0.56))
    side = np.sign(x - 0.5)
    b.move("jawOpen", idx, -0.012 * ramp * side, 0.075 * ramp)
    b.move("jawLeft", idx, SUBJECT_LEFT_X_SIGN * 0.035 * ramp)
    b.move("jawRight", idx, -SUBJECT_LEFT_X_SIGN * 0.035 * ramp)
    b.move("jawForward", idx, 0.0, 0.012 * ramp)
    b.move("cheekPuff", idx, side * 0.03 * np.exp(-((y - 0.63) / 0.07) ** 2))
    b.shape("head", "polygon", idx, "skin")
    fringe_x = np.concatenate([np.linspace(0.2, 0.8, 9), [0.84, 0.72, 0.5, 0.28, 0.16]])
    fringe_y = np.concatenate([0.21 + 0.03 * np.abs(np.sin(np.linspace(0, 4 * np.pi, 9))), [0.2, 0.08, 0.05, 0.08, 0.2]])
    b.shape("fringe", "polygon", b.add(fringe_x, fringe_y), "hair")


def _brows(b: RigBuilder) -> None:
    for side, s in SIDES:
        t = np.linspace(0, 1, 9)  # inner → outer
        x = 0.5 + s * (0.055 + 0.16 * t)
        y = 0.355 - 0.025 * np.sin(np.pi * (0.15 + 0.75 * t))
        th = 0.011 * (1 - 0.55 * t)
        idx = b.add(np.concatenate([x, x[::-1]]), np.concatenate([y - th, (y + th)[::-1]]))
        tt = np.concatenate([t, t[::-1]])
        b.move("browInnerUp", idx, 0.0, -0.045 * (1 - tt) ** 1.6)
        b.move(f"browDown{side}", idx, -s * 0.012 * (1 - tt), 0.03 * (1 - 0.6 * tt))
        b.move(f"browOuterUp{side}", idx, 0.0, -0.045 * tt ** 1.6)
        b.shape(f"brow{side}", "polygon", idx, "brow")
        line = b.add([0.5 + s * 0.018, 0.5 + s * 0.024], [0.36, 0.395])
        b.shape(f"frown{side}", "line", line, "wrinkle", width=0.004, alpha0=0.0,
                alpha_w={f"browDown{side}": 1.2}, fade_to=COLORS["skin"])
    for k, y in enumerate((0.255, 0.285)):
        xs = np.linspace(0.4, 0.6, 7)
        line = b.add(xs, y + 0.012 * ((xs - 0.5) / 0.1) ** 2)
        b.shape(f"forehead{k}", "line", line, "wrinkle", width=0.004, alpha0=0.0,
                alpha_w={"browInnerUp": 0.9, "browOuterUpLeft": 0.3, "browOuterUpRight": 0.3},
                fade_to=COLORS["skin"])


def _eyes(b: RigBuilder) -> None:
    ew, eh, ri = 0.066, 0.04, 0.029
    for side, s in SIDES:
        cx, cy = 0.5 + s * EYE_OFFSET_X, EYE_CENTER_Y
        t = np.linspace(0, 1, 11)
        bump = np.sin(np.pi * t)
        x = cx - ew + 2 * ew * t
        up = b.add(x, cy - eh * bump ** 0.9)
        lo = b.add(x, cy + 0.7 * eh * bump ** 1.1)
        closed = cy + 0.6 * eh * bump ** 1.1
        b.move(f"eyeBlink{side}", up, 0.0, closed - (cy - eh * bump ** 0.9))
        b.move(f"eyeBlink{side}", lo, 0.0, -0.1 * eh * bump ** 1.1)
        b.move(f"eyeWide{side}", up, 0.0, -0.45 * eh * bump)
        b.move(f"eyeWide{side}", lo, 0.0, 0.12 * eh * bump)
        b.move(f"eyeSquint{side}", lo, 0.0, -0.45 * eh * bump)
        b.move(f"eyeSquint{side}", up, 0.0, 0.2 * eh * bump)
        b.move(f"cheekSquint{side}", lo, 0.0, -0.3 * eh * bump)
        b.move(f"eyeLookDown{side}", up, 0.0, 0.2 * eh * bump)
        b.move(f"eyeLookUp{side}", up, 0.0, -0.12 * eh * bump)
        b.clamps.append((up, lo, True))
        opening = np.concatenate([up, lo[::-1]])
        b.shape(f"eye{side}", "polygon", opening, "white")
        iris = b.add([cx, cx + ri, cx, cx + 0.013, cx - 0.01, cx - 0.004],
                     [cy, cy, cy, cy, cy - 0.011, cy - 0.011])
        b.move(f"eyeLookOut{side}", iris, s * 0.04)
        b.move(f"eyeLookIn{side}", iris, -s * 0.04)
        b.move(f"eyeLookUp{side}", iris, 0.0, -0.028)
        b.move(f"eyeLookDown{side}", iris, 0.0, 0.028)
        b.shape(f"iris{side}", "circle", iris[:2], "iris", clip=f"eye{side}")
        b.shape(f"pupil{side}", "circle", iris[2:4], "pupil", clip=f"eye{side}")
        b.shape(f"glint{side}", "circle", iris[4:6], "white", clip=f"eye{side}")
        b.shape(f"upperLid{side}", "line", up, "lid", width=0.007)
        b.shape(f"lowerLid{side}", "line", lo[1:-1], "shadow", width=0.003)
        crease = b.add(x[1:-1], cy - 1.6 * eh * bump[1:-1] ** 0.8)
        for ch, k in ((f"eyeWide{side}", -0.2), (f"eyeBlink{side}", 0.5), (f"eyeSquint{side}", 0.3)):
            b.move(ch, crease, 0.0, k * eh * bump[1:-1])
        b.move(f"browDown{side}", crease, 0.0, 0.012 * bump[1:-1])
        b.shape(f"crease{side}", "line", crease, "shadow", width=0.004)


def _cheeks(b: RigBuilder) -> None:
    for side, s in SIDES:
        cx, cy = 0.5 + s * 0.19, 0.575
        x, y = _ellipse(cx, cy, 0.05, 0.03, 20)
        idx = b.add(x, y)
        b.move(f"cheekSquint{side}", idx, 0.15 * (x - cx), -0.02 + 0.15 * (y - cy))
        b.move("cheekPuff", idx, s * 0.02 + 0.3 * (x - cx), 0.3 * (y - cy))
        b.move(f"mouthSmile{side}", idx, 0.0, -0.01)
        b.shape(f"blush{side}", "polygon", idx, "blush", alpha0=0.25, fade_to=COLORS["skin"],
                alpha_w={f"cheekSquint{side}": 0.6, f"mouthSmile{side}": 0.3, "cheekPuff": 0.35})


def _nose(b: RigBuilder) -> None:
    b.shape("bridge", "line", b.add([0.482, 0.476, 0.474], [0.45, 0.50, 0.54]), "shadow", width=0.004)
    tip = b.add([0.475, 0.488, 0.5, 0.512, 0.525], [0.583, 0.59, 0.592, 0.59, 0.583])
    b.shape("tip", "line", tip, "shadow", width=0.005)
    for side, s in SIDES:
        wing = b.add(0.5 + s * np.array([0.026, 0.043, 0.046, 0.038]), [0.586, 0.58, 0.562, 0.545])
        b.move(f"noseSneer{side}", wing, s * 0.006, -0.015)
        b.move(f"noseSneer{side}", tip[[3 if s > 0 else 1]], 0.0, -0.008)
        b.shape(f"wing{side}", "line", wing, "shadow", width=0.005)
        wr = b.add(0.5 + s * np.array([0.03, 0.05]), [0.505, 0.53])
        b.shape(f"sneerLine{side}", "line", wr, "wrinkle", width=0.004, alpha0=0.0,
                alpha_w={f"noseSneer{side}": 1.2}, fade_to=COLORS["skin"])


def _mouth(b: RigBuilder) -> None:
    """Four lip curves that meet at the corners: upper outer/inner, lower inner/outer."""
    mx, my = MOUTH_CENTER
    mw = MOUTH_HALF_WIDTH
    first = b.n
    t = np.linspace(-1, 1, 17)  # viewer's left corner → viewer's right corner
    m = 1 - t ** 2  # 1 mid-lip, 0 at the corners
    x = mx + mw * t
    uo = b.add(x, my - 0.022 * m ** 0.6 + 0.007 * np.exp(-(t / 0.13) ** 2))
    ui = b.add(x, my - 0.0015 * m)
    li = b.add(x, my + 0.0015 * m)
    lo = b.add(x, my + 0.026 * m ** 0.7)
    lips = np.concatenate([uo, ui, li, lo])
    upper, lower = np.concatenate([uo, ui]), np.concatenate([li, lo])
    tt, mm = np.tile(t, 4), np.tile(m, 4)
    t2, m2 = np.tile(t, 2), np.tile(m, 2)
    drop = 0.08 * m2 ** 0.55
    b.move("jawOpen", lips, -0.1 * mw * tt, 0.012 * (1 - mm))
    b.move("jawOpen", lower, 0.0, drop + np.repeat([0.0, 0.004], 17) * m2)
    b.move("mouthClose", lower, 0.0, -drop)
    b.move("jawLeft", lower, SUBJECT_LEFT_X_SIGN * 0.03)
    b.move("jawRight", lower, -SUBJECT_LEFT_X_SIGN * 0.03)
    b.move("jawLeft", upper, SUBJECT_LEFT_X_SIGN * 0.008)
    b.move("jawRight", upper, -SUBJECT_LEFT_X_SIGN * 0.008)
    b.move("jawForward", lower, 0.0, np.repeat([-0.004, 0.004], 17) * m2)
    b.move("mouthFunnel", lips, -0.3 * mw * tt, np.repeat([-0.012, -0.016, 0.02, 0.014], 17) * mm ** 0.5)
    b.move("mouthPucker", lips, -0.42 * mw * tt, np.repeat([-0.01, 0.0, 0.0, 0.012], 17) * mm)
    b.move("mouthLeft", lips, SUBJECT_LEFT_X_SIGN * 0.035)
    b.move("mouthRight", lips, -SUBJECT_LEFT_X_SIGN * 0.035)
    b.move("mouthRollLower", lower, 0.0, np.repeat([-0.004, -0.02], 17) * m2 ** 0.7)
    b.move("mouthRollUpper", upper, 0.0, np.repeat([0.016, 0.003], 17) * m2 ** 0.6)
    b.move("mouthShrugLower", lower, 0.0, -0.012 * m2)
    b.move("mouthShrugUpper", upper, 0.0, -0.008 * m2)
    b.move("cheekPuff", lips, -0.1 * mw * tt, np.repeat([-0.004, 0.0, 0.0, 0.004], 17) * mm)
    for side, s in SIDES:
        c = np.clip(s * tt, 0, 1)  # 1 at this side's corner, 0 mid-lip
        w = _smoothstep(s * tt + 0.5)  # this half of the mouth
        w2 = w[:34]
        b.move(f"mouthSmile{side}", lips, s * 0.022 * c ** 1.5, -0.03 * c ** 2)
        b.move(f"mouthFrown{side}", lips, -s * 0.004 * c, 0.026 * c ** 2)
        b.move(f"mouthDimple{side}", lips, s * 0.012 * c, -0.004 * c)
        b.move(f"mouthStretch{side}", lips, s * 0.03 * c, 0.01 * c ** 2)
        b.move(f"mouthStretch{side}", lower, 0.0, 0.008 * m2 * w2)
        b.move(f"mouthPress{side}", lips, s * 0.006 * c, np.repeat([0.008, 0.002, -0.002, -0.008], 17) * mm * w)
        b.move(f"mouthLowerDown{side}", lower, 0.0, 0.028 * m2 ** 0.7 * w2)
        b.move(f"mouthUpperUp{side}", upper, 0.0, -0.022 * m2 ** 0.7 * w2)
        b.move(f"noseSneer{side}", upper, 0.0, -0.008 * m2 * w2)
    b.clamps.extend([(li, ui, False), (uo, ui, True), (lo, li, False)])
    _mouth_inside(b, ui, li, t)
    b.shape("upperLip", "polygon", np.concatenate([uo, ui[::-1]]), "upper_lip")
    b.shape("lowerLip", "polygon", np.concatenate([li, lo[::-1]]), "lower_lip")
    b.shape("seam", "line", ui, "mouth", width=0.003)
    _mouth_marks(b, uo, lo)
    b.scale_from(first, MOUTH_CENTER, MOUTH_SCALE)  # drawn in natural proportions, shown larger


def _mouth_inside(b: RigBuilder, ui: np.ndarray, li: np.ndarray, t: np.ndarray) -> None:
    """Dark interior, tongue and teeth, all clipped to the lip opening."""
    mx, my = MOUTH_CENTER
    b.shape("inside", "polygon", np.concatenate([ui, li[::-1]]), "mouth")
    tx, ty = _ellipse(mx, my + 0.03, 0.045, 0.022, 16)
    tongue = b.add(tx, ty)
    b.move("jawOpen", tongue, 0.0, 0.07)
    b.shape("tongue", "polygon", tongue, "tongue", clip="inside")
    xs = mx + 0.062 * t
    low = b.add(np.concatenate([xs, xs[::-1]]), np.concatenate([my + 0.009 + 0.006 * t ** 2, np.full(17, my + 0.05)]))
    b.move("jawOpen", low, -0.006 * np.concatenate([t, t[::-1]]), 0.062)
    b.move("jawForward", low, 0.0, -0.012)
    b.move("jawLeft", low, SUBJECT_LEFT_X_SIGN * 0.03)
    b.move("jawRight", low, -SUBJECT_LEFT_X_SIGN * 0.03)
    b.shape("lowerTeeth", "polygon", low, "teeth", clip="inside")
    up = b.add(np.concatenate([xs, xs[::-1]]), np.concatenate([np.full(17, my - 0.03), (my + 0.006 - 0.006 * t ** 2)[::-1]]))
    b.shape("upperTeeth", "polygon", up, "teeth", clip="inside")


def _mouth_marks(b: RigBuilder, uo: np.ndarray, lo: np.ndarray) -> None:
    """Tongue tip, dimples, smile folds and chin shadow, attached to the lips and jaw."""
    mx, my = MOUTH_CENTER
    mw = MOUTH_HALF_WIDTH
    tip = b.add(*_ellipse(mx, my + 0.008, 0.028, 0.012, 16))
    b.copy_moves(int(lo[8]), tip)  # the tip rests on the middle of the lower lip
    b.move("tongueOut", tip, 0.0, 0.03 + 0.8 * (b.points[-1][:, 1] - (my + 0.008)))
    b.shape("tongueTip", "polygon", tip, "tongue", alpha0=0.0, alpha_w={"tongueOut": 25.0},
            fade_to=COLORS["lower_lip"])
    for side, s in SIDES:
        corner = int(uo[16] if s > 0 else uo[0])
        dimple = b.add(mx + s * (mw + np.array([0.012, 0.016, 0.012])), my + np.array([-0.01, 0.0, 0.01]))
        b.copy_moves(corner, dimple)
        b.shape(f"dimple{side}", "line", dimple, "wrinkle", width=0.004, alpha0=0.0, fade_to=COLORS["skin"],
                alpha_w={f"mouthDimple{side}": 1.2, f"mouthSmile{side}": 0.3})
        fold = b.add(mx + s * np.array([0.05, 0.075, 0.095, 0.105]), [0.57, 0.60, 0.64, 0.685])
        b.copy_moves(corner, fold[3:])
        b.copy_moves(corner, fold[2:3], 0.5)
        b.shape(f"fold{side}", "line", fold, "shadow", width=0.004, alpha0=0.35, fade_to=COLORS["skin"],
                alpha_w={f"mouthSmile{side}": 0.6, f"noseSneer{side}": 0.4, f"cheekSquint{side}": 0.2})
    chin = b.add(mx + np.linspace(-0.035, 0.035, 7), my + 0.07 + 0.006 * np.linspace(-1, 1, 7) ** 2 * -1)
    b.copy_moves(int(lo[8]), chin)
    b.move("mouthShrugLower", chin, 0.0, -0.006)
    b.shape("chin", "line", chin, "shadow", width=0.004, alpha0=0.6, fade_to=COLORS["skin"])
