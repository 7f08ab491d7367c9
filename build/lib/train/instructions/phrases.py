"""Word material of the generated instruction corpus (our choice; the paper's 228 text–AU pairs
are not published).

Slots inside a phrasing: ``{your}`` possessive (your / her / his / their / its), ``{adv}`` an
adverb after the verb phrase (" slightly"), ``{adj}`` an adjective before a noun (" slight"),
``{deg}`` a degree adverb before an adjective (" very"). Each phrasing has exactly one of the
intensity slots. A phrasing must not contain the clause separators of
``cafetalk_rt.control.instruction_text`` (and, then, while, but, plus, commas) nor digits.

Emotion → AU sets follow EMFACS prototypes (Friesen & Ekman 1983), restricted to our vocabulary:
happy 6+12, sad 1+4+15, surprise 1+2+5+26, fear 1+2+4+5+7+20+26, anger 4+5+7+23,
disgust 9+10+15, contempt 12+14 (unilateral in FACS; both sides here).
"""
from __future__ import annotations

#: Intensity (AU condition value) of each level. Unmodified phrasings are "medium".
INTENSITY_LEVELS: dict[str, float] = {"low": 0.3, "medium": 0.6, "high": 1.0}

#: slot kind → level → words. The empty word (no modifier) is medium and is never held out.
INTENSITY_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "adv": {
        "low": ("slightly", "a little", "a bit", "faintly", "subtly", "gently", "lightly", "softly",
                "a touch", "just a little", "mildly", "barely", "a tiny bit", "weakly"),
        "medium": ("moderately", "somewhat", "fairly", "reasonably", "normally", "halfway", "a fair amount"),
        "high": ("strongly", "a lot", "intensely", "hard", "fully", "as much as you can", "very strongly",
                 "dramatically", "widely", "broadly", "deeply", "really hard", "to the max", "very broadly",
                 "with full force", "very much", "all the way"),
    },
    "adj": {
        "low": ("slight", "small", "faint", "subtle", "little", "tiny", "gentle", "light", "soft", "mild", "weak"),
        "medium": ("moderate", "medium", "normal", "regular", "fair", "average", "modest"),
        "high": ("big", "broad", "huge", "wide", "strong", "intense", "full", "deep", "enormous", "massive",
                 "dramatic", "large", "very big"),
    },
    "deg": {
        "low": ("slightly", "a little", "a bit", "mildly", "faintly", "barely", "vaguely", "a tad", "kind of",
                "a touch", "subtly"),
        "medium": ("fairly", "rather", "quite", "moderately", "pretty", "reasonably", "somewhat"),
        "high": ("very", "extremely", "really", "super", "incredibly", "so", "intensely", "totally", "utterly",
                 "deeply", "terribly", "hugely"),
    },
}

#: AU set → phrasings (verb phrases in the base form).
AU_PHRASES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("AU1",): (
        "raise the inner corners of {your} eyebrows{adv}", "lift {your} inner brows{adv}",
        "pull the inner ends of {your} brows up{adv}", "raise the centre of {your} brows{adv}",
        "tilt {your} eyebrows up at the centre{adv}", "push the middle of {your} eyebrows upward{adv}",
        "slant {your} brows upward toward the nose{adv}", "give a{adj} pleading lift of the inner brows",
        "raise the inside ends of {your} brows{adv}", "lift {your} brows near the nose{adv}"),
    ("AU2",): (
        "raise the outer corners of {your} eyebrows{adv}", "lift the outer ends of {your} brows{adv}",
        "pull the outer edges of {your} brows up{adv}",
        "raise {your} brows at the temples{adv}", "hike up the tails of {your} eyebrows{adv}",
        "lift the outside of {your} eyebrows{adv}", "peak {your} brows at the outer ends{adv}",
        "raise {your} brows at the outer edges{adv}", "arch the outer brows{adv}"),
    ("AU1", "AU2"): (
        "raise {your} eyebrows{adv}", "lift {your} brows{adv}", "arch {your} eyebrows{adv}",
        "put {your} eyebrows up{adv}", "pull {your} eyebrows up{adv}", "give a{adj} eyebrow raise",
        "hoist {your} eyebrows{adv}", "make {your} brows go up{adv}", "do a{adj} brow raise",
        "elevate {your} eyebrows{adv}", "bring {your} eyebrows up{adv}"),
    ("AU4",): (
        "frown{adv}", "knit {your} brows{adv}", "furrow {your} brow{adv}", "lower {your} eyebrows{adv}",
        "scowl{adv}", "draw {your} brows together{adv}", "pull {your} eyebrows down{adv}", "give a{adj} frown",
        "crease {your} forehead between the brows{adv}", "bring {your} eyebrows down toward each other{adv}",
        "glower{adv}", "make a{adj} scowl", "draw {your} eyebrows down{adv}", "make a{adj} frown"),
    ("AU5",): (
        "widen {your} eyes{adv}", "open {your} eyes wider{adv}", "stare{adv}", "raise {your} upper eyelids{adv}",
        "go wide-eyed{adv}", "pop {your} eyes open{adv}", "give a{adj} wide-eyed stare",
        "lift {your} upper lids{adv}", "bulge {your} eyes{adv}", "show the whites of {your} eyes{adv}",
        "make {your} eyes bigger{adv}", "pop {your} eyelids up{adv}"),
    ("AU6",): (
        "raise {your} cheeks{adv}", "lift {your} cheeks{adv}", "push {your} cheeks up{adv}",
        "crinkle the corners of {your} eyes{adv}", "bunch up {your} cheeks{adv}",
        "make crow's feet around {your} eyes{adv}", "squeeze {your} cheeks up toward {your} eyes{adv}",
        "tighten {your} cheeks under the eyes{adv}", "give a{adj} cheek raise", "lift {your} cheekbones{adv}",
        "squish {your} cheeks up{adv}"),
    ("AU7",): (
        "squint{adv}", "narrow {your} eyes{adv}", "tighten {your} eyelids{adv}", "tense {your} lids{adv}",
        "make {your} eyes narrow{adv}", "give a{adj} squint", "tighten the skin around {your} eyes{adv}",
        "peer suspiciously{adv}", "squint {your} eyes{adv}",
        "tense {your} lower eyelids{adv}", "narrow {your} gaze{adv}"),
    ("AU9",): (
        "wrinkle {your} nose{adv}", "scrunch {your} nose{adv}", "crinkle {your} nose{adv}",
        "give a{adj} nose wrinkle", "pinch {your} nose up{adv}", "screw up {your} nose{adv}",
        "make {your} nose wrinkle{adv}", "pull {your} nostrils up{adv}", "crumple {your} nose{adv}",
        "wrinkle up {your} nose{adv}"),
    ("AU10",): (
        "raise {your} upper lip{adv}", "curl {your} upper lip{adv}", "lift {your} top lip{adv}",
        "bare {your} upper teeth{adv}", "snarl{adv}", "pull {your} upper lip up{adv}", "show {your} top teeth{adv}",
        "give a{adj} lip curl", "hitch {your} upper lip up{adv}", "curl {your} top lip up{adv}"),
    ("AU12",): (
        "smile{adv}", "grin{adv}", "beam{adv}", "give a{adj} smile", "pull the corners of {your} mouth up{adv}",
        "turn up the corners of {your} lips{adv}", "crack a{adj} smile", "break into a{adj} grin",
        "put on a{adj} smile", "flash a{adj} grin", "lift {your} lip corners{adv}", "show a{adj} smile",
        "make a{adj} smile", "curve {your} lips up{adv}"),
    ("AU14",): (
        "dimple{adv}", "show {your} dimples{adv}", "tuck in the corners of {your} mouth{adv}",
        "press {your} lip corners inward{adv}", "make {your} dimples appear{adv}",
        "tighten the corners of {your} mouth{adv}", "pull {your} mouth corners in{adv}",
        "deepen {your} dimples{adv}", "give a{adj} dimpled look", "make a{adj} dimple",
        "tuck {your} mouth corners{adv}"),
    ("AU15",): (
        "pull the corners of {your} mouth down{adv}", "turn down {your} mouth{adv}", "droop {your} lip corners{adv}",
        "turn {your} lips downward{adv}", "lower the corners of {your} lips{adv}",
        "depress {your} lip corners{adv}", "let the corners of {your} mouth sag{adv}",
        "do a{adj} upside-down smile", "pull a{adj} long face", "frown with {your} mouth{adv}",
        "make {your} mouth corners sag{adv}"),
    ("AU17",): (
        "raise {your} chin{adv}", "push {your} chin up{adv}", "wrinkle {your} chin{adv}",
        "push {your} lower lip up{adv}", "pout{adv}", "tense {your} chin{adv}", "bunch up {your} chin{adv}",
        "jut {your} lower lip out{adv}", "make a{adj} pout", "stick out {your} lower lip{adv}",
        "push out {your} bottom lip{adv}", "make a{adj} sulky face", "pucker {your} chin{adv}"),
    ("AU20",): (
        "stretch {your} lips{adv}", "pull {your} lips sideways{adv}", "pull {your} lip corners outward{adv}",
        "tense {your} lips toward {your} ears{adv}", "grimace{adv}", "make a{adj} grimace",
        "spread {your} lips horizontally{adv}", "draw {your} mouth corners back{adv}",
        "make a{adj} tense lip stretch",
        "stretch the corners of {your} mouth to the sides{adv}"),
    ("AU23",): (
        "tighten {your} lips{adv}", "thin {your} lips{adv}", "roll {your} lips in{adv}", "narrow {your} lips{adv}",
        "make {your} lips thin{adv}", "purse {your} lips{adv}", "tuck {your} lips in{adv}",
        "pull {your} lips taut{adv}", "draw {your} lips tight{adv}", "tense {your} lips{adv}"),
    ("AU24",): (
        "press {your} lips together{adv}", "clamp {your} lips shut{adv}", "squeeze {your} lips together{adv}",
        "compress {your} lips{adv}", "seal {your} lips{adv}", "push {your} lips against each other{adv}",
        "keep {your} lips pressed{adv}", "press {your} mouth shut{adv}", "make a{adj} tight-lipped face",
        "squash {your} lips together{adv}", "mash {your} lips together{adv}"),
    ("AU25",): (
        "part {your} lips{adv}", "open {your} lips{adv}", "let {your} lips separate{adv}",
        "keep {your} lips apart{adv}", "leave a gap between {your} lips{adv}", "unseal {your} lips{adv}",
        "separate {your} lips{adv}", "let {your} lips come apart{adv}", "let {your} lips fall open{adv}",
        "leave {your} lips ajar{adv}", "draw {your} lips apart{adv}"),
    ("AU26",): (
        "drop {your} jaw{adv}", "open {your} mouth{adv}", "let {your} jaw fall{adv}", "gape{adv}",
        "let {your} mouth hang open{adv}", "lower {your} jaw{adv}", "open {your} jaw{adv}",
        "let {your} chin drop{adv}", "give a{adj} jaw drop", "go slack-jawed{adv}", "let {your} jaw hang{adv}",
        "let {your} mouth fall open{adv}"),
    ("AU43",): (
        "close {your} eyes{adv}", "shut {your} eyes{adv}", "blink{adv}", "keep {your} eyes closed{adv}",
        "lower {your} eyelids{adv}", "close {your} eyelids{adv}", "shut {your} eyelids{adv}", "give a{adj} blink",
        "let {your} eyes fall shut{adv}", "squeeze {your} eyes shut{adv}", "bat {your} eyelids{adv}",
        "let {your} eyelids drop{adv}", "give a{adj} slow blink", "flutter {your} eyelids{adv}",
        "keep {your} eyelids shut{adv}"),
}

#: emotion → (AU set, phrasings). Emotion–AU pairs as the paper adds to its text–AU pairs.
EMOTION_PHRASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "happy": (("AU6", "AU12"), (
        "look{deg} happy", "look{deg} joyful", "look{deg} pleased", "look{deg} delighted", "look{deg} cheerful",
        "seem{deg} glad", "show{adj} happiness", "be{deg} happy", "act{deg} thrilled", "look{deg} content")),
    "sad": (("AU1", "AU4", "AU15"), (
        "look{deg} sad", "look{deg} unhappy", "look{deg} sorrowful", "look{deg} gloomy", "look{deg} miserable",
        "seem{deg} depressed", "appear{deg} heartbroken", "show{adj} sadness", "be{deg} downcast",
        "look{deg} dejected")),
    "surprised": (("AU1", "AU2", "AU5", "AU26"), (
        "look{deg} surprised", "look{deg} astonished", "look{deg} amazed", "look{deg} shocked",
        "seem{deg} startled", "appear{deg} stunned", "show{adj} surprise", "be{deg} astounded",
        "look{deg} flabbergasted")),
    "fear": (("AU1", "AU2", "AU4", "AU5", "AU7", "AU20", "AU26"), (
        "look{deg} scared", "look{deg} afraid", "look{deg} frightened", "look{deg} terrified",
        "seem{deg} fearful", "appear{deg} panicked", "show{adj} fear", "look{deg} horrified", "look{deg} petrified")),
    "angry": (("AU4", "AU5", "AU7", "AU23"), (
        "look{deg} angry", "look{deg} furious", "look{deg} mad", "seem{deg} irritated", "appear{deg} enraged",
        "show{adj} anger", "look{deg} annoyed", "be{deg} livid", "look{deg} outraged")),
    "disgusted": (("AU9", "AU10", "AU15"), (
        "look{deg} disgusted", "look{deg} grossed out", "look{deg} repulsed", "look{deg} revolted",
        "seem{deg} nauseated", "show{adj} disgust", "appear{deg} sickened", "look{deg} appalled",
        "look{deg} nauseous")),
    "contempt": (("AU12", "AU14"), (
        "look{deg} contemptuous", "look{deg} scornful", "look{deg} disdainful", "seem{deg} smug",
        "show{adj} contempt", "appear{deg} condescending", "look{deg} dismissive", "look{deg} superior",
        "look{deg} haughty")),
}

#: Requests with no AU of the vocabulary (head, body, gaze, voice, neutral face): label = {}.
NEGATIVE_PHRASES: tuple[str, ...] = (
    "wave {your} hand{adv}", "nod {your} head{adv}", "shake {your} head{adv}", "turn {your} head to the left{adv}",
    "look to the right{adv}", "look at the camera{adv}", "glance down{adv}", "tilt {your} head{adv}",
    "shrug {your} shoulders{adv}", "raise {your} hand{adv}", "cross {your} arms{adv}", "speak louder{adv}",
    "talk faster{adv}", "say hello{adv}", "keep talking{adv}", "stand up{adv}", "sit down{adv}",
    "point at the screen{adv}", "clap {your} hands{adv}", "walk forward{adv}", "breathe{adv}",
    "keep a neutral face{adv}", "relax {your} face{adv}", "stay still{adv}", "keep a straight face{adv}",
    "lean back{adv}", "move {your} head up{adv}", "look away{adv}", "turn around{adv}", "sing a song{adv}",
    "whisper the words{adv}", "bow{adv}", "look up at the ceiling{adv}", "lower {your} voice{adv}",
    "turn {your} head to the right{adv}", "look down at the floor{adv}", "scratch {your} head{adv}",
    "tap {your} foot{adv}", "speak slowly{adv}", "pause for a moment{adv}", "take a deep breath{adv}",
    "hold still{adv}",
)

#: Sentence frames. ``{act}`` is the phrase; the frame fixes the possessive used in ``{your}``.
FRAMES: tuple[tuple[str, str], ...] = (
    ("{act}", "your"), ("please {act}", "your"), ("now {act}", "your"), ("i'd like you to {act}", "your"),
    ("could you {act}", "your"), ("try to {act}", "your"), ("go ahead to {act}", "your"),
    ("{act} please", "your"), ("you should {act}", "your"), ("let's see you {act}", "your"),
    ("i need you to {act}", "your"), ("i want you to {act}", "your"), ("make sure to {act}", "your"),
    ("she should {act}", "her"), ("have him {act}", "his"), ("make them {act}", "their"),
    ("the avatar should {act}", "its"), ("the speaker needs to {act}", "their"), ("let her {act}", "her"),
    ("the character will {act}", "its"), ("he has to {act}", "his"), ("get her to {act}", "her"),
    ("the face should {act}", "its"), ("we want the actor to {act}", "their"), ("remember to {act}", "your"),
)

#: Joiners of several acts in one sentence (all are clause separators of the runtime splitter).
#: Weak joiners keep one sentence (a shared time applies to all acts); strong ones start a new one.
WEAK_CONJUNCTIONS: tuple[str, ...] = (" and ", ", and ", ", ", " while ", " and also ", " and at the same time ",
                                      " plus ", " as well as ")
STRONG_CONJUNCTIONS: tuple[str, ...] = (", then ", " and then ", ". ", "; ", " then ")

#: Words that mark a sentence as being about the face (such sentences are no negatives).
FACE_WORDS: tuple[str, ...] = (
    "smil", "grin", "frown", "brow", "eye", "lid", "lip", "mouth", "nose", "cheek", "chin", "jaw", "blink",
    "face", "look", "stare", "squint", "wink", "teeth", "tooth", "sneer", "pout", "scowl", "dimple", "laugh",
    "happy", "sad", "angry", "surprise", "fear", "disgust", "contempt", "grimace", "gape", "beam")
