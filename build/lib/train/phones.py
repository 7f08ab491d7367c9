"""Phone-level label files (HTK ``.lab``) and ARPAbet phone classes. numpy-free, stdlib only.

Used by tests on the bundled CMU ARCTIC clip (``assets/arctic_a0009_phone.lab``) and by the
training corpus tools (``train.corpus.lab`` re-exports :func:`read_phone_lab`).
"""
from __future__ import annotations

import re
from pathlib import Path

#: HTK label times are integers in units of 100 ns.
HTK_UNITS_PER_S = 10_000_000

_ARPABET_VOWELS = ("aa", "ae", "ah", "ao", "aw", "ax", "axr", "ay", "eh", "er", "ey", "ih", "ix",
                   "iy", "ow", "oy", "uh", "uw", "ux")


def _both_cases(names) -> frozenset[str]:
    return frozenset({n.lower() for n in names} | {n.upper() for n in names})


#: ARPAbet vowels (incl. CMU ARCTIC's ``ax``), lower and upper case, without stress digits.
VOWELS: frozenset[str] = _both_cases(_ARPABET_VOWELS)
#: Bilabial consonants: the lips close.
BILABIALS: frozenset[str] = _both_cases(("p", "b", "m"))
#: Silence / pause labels used by HTK, CMU ARCTIC, TIMIT and MFA.
SILENCES: frozenset[str] = _both_cases(("sil", "pau", "sp", "spn", "h#", "#"))

# Full-context HTS labels: "p1^p2-p3+p4=p5@...": the current phone is p3.
_FULL_CONTEXT = re.compile(r"^[^\^]*\^[^-]*-([^+]+)\+")


def base_phone(label: str) -> str:
    """A label without its ARPAbet stress digit (``"AH0"`` → ``"AH"``)."""
    return label[:-1] if label[-1:].isdigit() else label


def read_phone_lab(path: str | Path) -> list[tuple[str, float, float]]:
    """Read an HTK-style phone label file.

    Each non-empty line is ``start end label`` with times in 100 ns units; ``label`` may be a
    plain phone (``"sil"``, ``"AH0"``) or an HTS full-context label, whose current phone (between
    ``-`` and ``+``) is returned.

    Returns:
        ``[(phone, start_s, end_s)]`` in file order, times in seconds.

    Raises:
        FileNotFoundError: missing file. ValueError: a line that is not ``start end label`` with
        integer times and ``end >= start`` (names the line).
    """
    path = Path(path)
    out = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = raw.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise ValueError(f"{path}:{lineno}: expected 'start end label' (HTK 100 ns units), got {raw!r}")
        try:
            start, end = int(parts[0]), int(parts[1])
        except ValueError:
            raise ValueError(f"{path}:{lineno}: times must be integers in 100 ns units, got {raw!r}") from None
        if end < start:
            raise ValueError(f"{path}:{lineno}: end {end} is before start {start}")
        label = parts[2]
        m = _FULL_CONTEXT.match(label)
        out.append((m.group(1) if m else label, start / HTK_UNITS_PER_S, end / HTK_UNITS_PER_S))
    return out
