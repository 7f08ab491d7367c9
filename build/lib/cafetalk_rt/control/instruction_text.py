"""Time and intensity phrases of free-text instructions, and clause splitting (regex + numpy only).

An instruction such as ``"smile broadly from 2 to 3 seconds and blink at the end"`` is read in
three steps, before the text → AU detector (:mod:`cafetalk_rt.control.instructions`) sees anything:

1. explicit intensities (``"at 80 %"``) and time phrases are found, turned into numbers, and
   replaced by placeholders, so their words never reach the detector;
2. the text is cut into clauses at ``; . ! ?``, ``then``, ``but`` (strong) and at ``,``, ``and``,
   ``while``, ``plus``, ``as well as`` (weak; the caller may glue weak pieces back together);
3. each clause keeps the times written in it; clauses without one take the time of the next
   timed piece of their sentence, or a leading time (``"at the start, smile and blink"``), or else
   the whole clip.

Accepted time forms (``ACCEPTED_TIME_FORMS``; seconds, ``s``/``sec``/``seconds`` or ``ms``,
digits or the words one … twenty). Named periods use ``edge_s = min(EDGE_FRACTION · duration,
EDGE_MAX_S)`` (our choice; the paper gives no convention).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from cafetalk_rt.errors import InputError

#: Fraction of the clip that "at the start" / "at the end" / "in the middle" cover, capped at
#: ``EDGE_MAX_S`` seconds (our choice).
EDGE_FRACTION = 0.25
EDGE_MAX_S = 2.0
#: Length of the window centred on a point time ("at 2 s").
POINT_SPAN_S = 1.0
#: How far past the audio's end a written time may reach before it is an error (rounding).
END_TOLERANCE_S = 0.02

ACCEPTED_TIME_FORMS = (
    '"from 2 to 3 seconds", "between 1.5 s and 2", "2-3 s", "from 2 s on", "after 2 s", '
    '"until 3 s", "at 2 s" (a 1 s window), "for 2 seconds starting at 1", '
    '"for the first/last 2 seconds", "for the last second", "in the first/second half", '
    '"at the start", "in the middle", "at the end", "throughout" (also the default)')
ACCEPTED_INTENSITY_FORMS = ('"at 80 %", "at 80 percent", "with intensity 0.8", "at full intensity", '
                            'or words: "slightly", "very", "broadly", …')

_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
          "fifteen sixteen seventeen eighteen nineteen twenty").split()
_WORD_VALUE = {w: float(i) for i, w in enumerate(_WORDS)} | {"half": 0.5, "half a": 0.5, "a": 1.0, "one": 1.0}
_NUM = r"\d+(?:\.\d+)?|\.\d+|" + "|".join(sorted(_WORDS, key=len, reverse=True))
_UNIT = r"(?:ms|msecs?|milliseconds?|s|secs?|seconds?)\b"
_CLIP = r"(?:\s+(?:of|in|into)\s+(?:the|this)\s+(?:clip|audio|recording|sentence|speech|video|animation))?"


def _g(name: str) -> str:
    """Named number group ``name`` with an optional unit group ``u<name>``."""
    return rf"(?P<{name}>{_NUM})\s*(?P<u{name}>{_UNIT})?"


def _named(words: str) -> str:
    return rf"\b(?:{words}){_CLIP}\b"


_START = r"(?:at|in|near|toward|towards)\s+the\s+(?:very\s+)?(?:start|beginning|outset|onset)|at\s+first|early\s+on"
_END = r"(?:at|in|near|toward|towards|by)\s+the\s+(?:very\s+)?(?:end|finish|close)|at\s+the\s+last\s+moment"
_MIDDLE = r"(?:in|around|at)\s+the\s+(?:very\s+)?middle|halfway\s+through|midway(?:\s+through)?|mid-?way"
_ALL = (r"throughout(?:\s+the\s+(?:whole\s+|entire\s+)?(?:clip|audio|recording|sentence|speech|video|animation))?|"
        r"the\s+whole\s+time|all\s+the\s+time|the\s+entire\s+time|all\s+along|continuously|"
        r"(?:for|during)\s+the\s+(?:whole|entire)\s+(?:clip|audio|recording|sentence|speech|video|animation|time)|"
        r"from\s+(?:start|beginning)\s+to\s+(?:finish|end)|all\s+the\s+way\s+through|the\s+whole\s+way\s+through")
_FIRST_LAST = (r"(?:(?:for|during|in|over|within)\s+)?the\s+(?P<which>first|last|final|opening|closing)\s+"
               rf"(?:(?P<n>{_NUM}|half\s+a|half|couple\s+of)\s*)?(?P<un>{_UNIT})")

#: (regex, kind) in no particular order: the longest match wins, then the earliest.
_TIME_PATTERNS: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(p), k) for p, k in (
    (rf"\b(?:from|starting\s+(?:at|from)|beginning\s+at)\s+(?:second\s+)?{_g('a')}\s*"
     rf"(?:-|to|until|till|til|through|thru)\s*(?:second\s+)?{_g('b')}{_CLIP}", "range"),
    (rf"\bbetween\s+(?:second\s+)?{_g('a')}\s*(?:and|-|to)\s*{_g('b')}{_CLIP}", "range"),
    (rf"\b(?:(?:during|over|in|within|for)\s+)?(?<![\d.]){_g('a')}\s*(?:-|to)\s*"
     rf"(?P<b>{_NUM})\s*(?P<ub>{_UNIT}){_CLIP}", "range"),
    (rf"\b(?:(?:during|over|in|within|for)\s+)?(?<![\d.])(?P<a>{_NUM})\s*(?P<ua>{_UNIT})\s*(?:-|to)\s*"
     rf"{_g('b')}{_CLIP}", "range"),
    (rf"\b(?:from|after|starting\s+(?:at|from)|beginning\s+at|past)\s+(?:second\s+)?{_g('a')}"
     rf"(?:\s+(?:on|onwards?|forwards?|(?:to|until|till)\s+the\s+end))?{_CLIP}", "from"),
    (rf"\b(?:from\s+the\s+(?:start|beginning)\s+(?:to|until|till)|until|till|til|up\s+to|before)\s+"
     rf"(?:second\s+)?{_g('a')}{_CLIP}", "until"),
    (rf"\bfor\s+{_g('n')}\s+(?:starting\s+(?:at|from)|beginning\s+at|from|after)\s+(?:second\s+)?{_g('a')}",
     "window"),
    (rf"\b(?:at|from|starting\s+at)\s+(?:second\s+)?{_g('a')}\s+for\s+{_g('n')}", "window"),
    (rf"\bfor\s+(?:the\s+)?(?P<n>{_NUM}|half\s+a|a)\s*(?P<un>{_UNIT})", "first_n"),
    (rf"\b(?:at|around|about|near)\s+(?:the\s+)?(?:second\s+)?(?P<a>{_NUM})\s*"
     rf"(?:(?P<ua>{_UNIT})(?:\s*-?\s*mark)?|-?\s*second\s+mark|\s*mark)", "point"),
    (rf"\bat\s+second\s+(?P<a>{_NUM})\b", "point"),
    (_FIRST_LAST + _CLIP, "first_last"),
    (rf"\b(?:(?:in|during|for|over)\s+)?the\s+(?P<half>first|second|last|latter|former)\s+half{_CLIP}\b", "half"),
    (_named(_START), "start"), (_named(_END), "end"), (_named(_MIDDLE), "middle"), (_named(_ALL), "all"),
))
_PERCENT_PATTERNS: tuple[re.Pattern, ...] = tuple(re.compile(p) for p in (
    rf"\b(?:(?:at|with|to)\s+)?(?:an?\s+)?(?P<p>\d+(?:\.\d+)?)\s*(?:%|percent\b|per\s+cent\b)"
    r"(?:\s+(?:intensity|strength|power))?",
    r"\b(?:at|with)\s+(?:an?\s+)?(?:intensity|strength)\s+(?:of\s+)?(?P<f>\d+(?:\.\d+)?|\.\d+)(?P<pc>\s*%)?",
    r"\b(?:at|with)\s+(?P<w>full|maximum|max|half|low|high)\s+(?:intensity|strength|power)\b",
))
_PERCENT_WORDS = {"full": 1.0, "maximum": 1.0, "max": 1.0, "high": 1.0, "half": 0.5, "low": 0.3}
_STRONG = re.compile(r"[;.!?]+(?!\d)|,?\s*\b(?:and\s+then|then|after\s+that|afterwards|but)\b")
_WEAK = re.compile(r",|\b(?:and|while|plus|as\s+well\s+as|along\s+with|together\s+with)\b")
_FILLER = re.compile(r"\b(?:please|now|also|too|both|as\s+well|at\s+the\s+same\s+time|simultaneously|"
                     r"meanwhile|okay|ok|so|for\s+me|and|then|the|a|an|of|it|do|that|this|time)\b")
_PLACEHOLDER = re.compile("\ue000([tp])(\\d+)\ue001")


@dataclass(frozen=True)
class Clause:
    """One piece of an instruction.

    Attributes:
        text: the words left for the detector (lower case, time/intensity phrases removed).
        times: ((start_s, end_s), ...) seconds, non-empty, within [0, duration_s].
        intensity: explicit intensity in [0, 1] ("at 80 %"), or None (the detector decides).
        sentence: index of the strong segment (sentence) the piece came from.
    """
    text: str
    times: tuple[tuple[float, float], ...]
    intensity: float | None
    sentence: int


def normalise(text: str) -> str:
    """Lower case, unicode dashes → "-", private-use characters dropped, spaces collapsed."""
    text = str(text).lower().replace("\u2013", "-").replace("\u2014", "-").replace("\u2212", "-")
    text = re.sub("[\ue000-\uf8ff]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _number(text: str, unit: str | None, other_unit: str | None = None) -> float:
    """Seconds from a number (digits or words) and its unit (or the other end's unit)."""
    key = re.sub(r"\s+", " ", text.strip())
    value = _WORD_VALUE[key] if key in _WORD_VALUE else 2.0 if key == "couple of" else float(key)
    unit = unit or other_unit or "s"
    return value / 1000.0 if unit.startswith("m") else value


def _time_range(m: re.Match, kind: str, duration_s: float) -> tuple[float, float]:
    """(start_s, end_s) of a matched time phrase; raises InputError past the audio's end."""
    d, g = duration_s, m.groupdict()
    edge = min(EDGE_FRACTION * d, EDGE_MAX_S)
    a = _number(g["a"], g.get("ua"), g.get("ub")) if g.get("a") else None
    if kind == "range":
        start, end = a, _number(g["b"], g.get("ub"), g.get("ua"))
    elif kind == "from":
        start, end = a, d
    elif kind == "until":
        start, end = 0.0, a
    elif kind == "window":
        start = a
        end = a + _number(g["n"], g.get("un"))
    elif kind == "first_n":
        start, end = 0.0, _number(g["n"], g.get("un"))
    elif kind == "point":
        start, end = a - POINT_SPAN_S / 2, a + POINT_SPAN_S / 2
        if a > d + END_TOLERANCE_S:
            raise InputError(f"{m.group(0)!r} is at {a:g} s but the audio is only {d:.2f} s long")
        start, end = max(start, 0.0), min(end, d)
    elif kind == "first_last":
        n = _number(g["n"] or "one", g.get("un"))
        start, end = (0.0, n) if g["which"] in ("first", "opening") else (d - n, d)
        if n > d + END_TOLERANCE_S:
            raise InputError(f"{m.group(0)!r} asks for {n:g} s but the audio is only {d:.2f} s long")
    elif kind == "half":
        start, end = (0.0, d / 2) if g["half"] in ("first", "former") else (d / 2, d)
    else:
        start, end = {"start": (0.0, edge), "end": (d - edge, d), "all": (0.0, d),
                      "middle": (d / 2 - edge / 2, d / 2 + edge / 2)}[kind]
    return _check_range(m.group(0), max(start, 0.0), end, d)


def _check_range(phrase: str, start: float, end: float, d: float) -> tuple[float, float]:
    if end <= start:
        raise InputError(f"time {phrase!r} ends ({end:g} s) before it starts ({start:g} s); "
                         f"write the earlier time first, e.g. \"from 2 to 3 seconds\"")
    if start >= d or end > d + END_TOLERANCE_S:
        raise InputError(f"time {phrase!r} ({start:g}-{end:g} s) runs past the end of the audio "
                         f"({d:.2f} s); keep every time within 0-{d:.2f} s")
    return float(start), float(min(end, d))


def _longest_matches(text: str, patterns) -> list[tuple[re.Match, object]]:
    """Non-overlapping matches of (regex, tag) pairs: longest first, then earliest."""
    found = [(m, tag) for rx, tag in patterns for m in rx.finditer(text)]
    found.sort(key=lambda mt: (-(mt[0].end() - mt[0].start()), mt[0].start()))
    taken: list[tuple[re.Match, object]] = []
    for m, tag in found:
        if all(m.end() <= t.start() or m.start() >= t.end() for t, _ in taken):
            taken.append((m, tag))
    return sorted(taken, key=lambda mt: mt[0].start())


def _substitute(text: str, matches, letter: str) -> str:
    """Replace each match by a placeholder ``\\ue000<letter><i>\\ue001``."""
    out, pos = [], 0
    for i, (m, _) in enumerate(matches):
        out += [text[pos:m.start()], f" \ue000{letter}{i}\ue001 "]
        pos = m.end()
    return "".join(out + [text[pos:]])


def _percent(m: re.Match) -> float:
    g = m.groupdict()
    if g.get("w"):
        value = _PERCENT_WORDS[g["w"]]
    elif g.get("p"):
        value = float(g["p"]) / 100.0
    else:
        value = float(g["f"]) / (100.0 if g.get("pc") or float(g["f"]) > 1.0 else 1.0)
    if not 0.0 <= value <= 1.0:
        raise InputError(f"intensity {m.group(0)!r} is outside 0-100 %; accepted: {ACCEPTED_INTENSITY_FORMS}")
    return value


def extract_phrases(text: str, duration_s: float) -> tuple[str, list[tuple[float, float]], list[float]]:
    """Find intensity and time phrases in normalised ``text``.

    Returns:
        the text with placeholders, the (start_s, end_s) of each time placeholder ``t<i>`` and
        the intensity in [0, 1] of each intensity placeholder ``p<i>``.
    Raises:
        InputError: a time past the audio's end or reversed, an intensity over 100 %.
    """
    if not duration_s > 0:
        raise InputError(f"duration_s must be positive, got {duration_s!r}")
    pm = _longest_matches(text, [(rx, None) for rx in _PERCENT_PATTERNS])
    intensities = [_percent(m) for m, _ in pm]
    text = _substitute(text, pm, "p")
    tm = _longest_matches(text, _TIME_PATTERNS)
    times = [_time_range(m, kind, duration_s) for m, kind in tm]
    return _substitute(text, tm, "t"), times, intensities


def content_words(piece: str) -> str:
    """What is left of a piece once placeholders, punctuation and filler words are gone."""
    piece = _PLACEHOLDER.sub(" ", piece)
    piece = _FILLER.sub(" ", re.sub(r"[^\w\s'-]", " ", piece))
    return re.sub(r"\s+", " ", piece).strip()


def split_pieces(text: str) -> list[tuple[int, str]]:
    """Cut placeholder text into (sentence index, piece) at strong, then weak separators."""
    pieces = []
    for s, sentence in enumerate(_STRONG.split(text)):
        pieces += [(s, p.strip(" ,")) for p in _WEAK.split(sentence) if p.strip(" ,")]
    return pieces


def _piece_clause(piece: str, sentence: int, times, intensities) -> tuple[str, tuple, float | None]:
    """(detector text, own times, explicit intensity) of one piece; errors on stray numbers."""
    refs = _PLACEHOLDER.findall(piece)
    own = tuple(times[int(i)] for k, i in refs if k == "t")
    pct = [intensities[int(i)] for k, i in refs if k == "p"]
    words = re.sub(r"\s+", " ", _PLACEHOLDER.sub(" ", piece)).strip(" ,")
    if re.search(r"\d", words):
        raise InputError(f"could not read the number in {words!r}; accepted time forms: {ACCEPTED_TIME_FORMS}; "
                         f"intensity: {ACCEPTED_INTENSITY_FORMS}")
    return words, own, (max(pct) if pct else None)


def split_instruction(text: str, duration_s: float) -> list[Clause]:
    """Split an instruction into clauses with resolved times (rules in the module doc).

    Args:
        text: the instruction; duration_s: the audio's length in seconds.
    Returns:
        clauses with non-empty ``text`` (may be empty if the text holds only times/fillers).
    Raises:
        InputError: empty text, bad/stray numbers, a time past the end of the audio.
    """
    norm = normalise(text)
    if not norm:
        raise InputError(f"the instruction is empty; write e.g. \"smile broadly from 2 to 3 seconds\"; "
                         f"accepted time forms: {ACCEPTED_TIME_FORMS}")
    marked, times, intensities = extract_phrases(norm, duration_s)
    whole = ((0.0, float(duration_s)),)
    clauses: list[Clause] = []
    pending: list[tuple[str, float | None, int]] = []
    lead: tuple = ()
    lead_pct: float | None = None
    sentence = -1
    for s, piece in split_pieces(marked):
        if s != sentence:  # a new sentence: flush what waited for a time
            clauses += [Clause(w, whole, p, ss) for w, p, ss in pending]
            pending, lead, lead_pct, sentence = [], (), None, s
        words, own, pct = _piece_clause(piece, s, times, intensities)
        has_content = bool(content_words(words))
        if own and pending:  # "smile and blink at the end": the waiting pieces take this time
            bare_pct = None if has_content else pct
            clauses += [Clause(w, own, p if p is not None else bare_pct, s) for w, p, _ in pending]
            pending = []
        elif not has_content:  # a leading time / intensity: "at the start, smile and blink"
            lead, lead_pct = own or lead, pct if pct is not None else lead_pct
        if not has_content:
            continue
        if own or lead:
            clauses.append(Clause(words, own or lead, pct if pct is not None else lead_pct, s))
        else:
            pending.append((words, pct if pct is not None else lead_pct, s))
    return clauses + [Clause(w, whole, p, ss) for w, p, ss in pending]
