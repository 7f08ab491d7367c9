"""cafetalk_rt: speech in, 52 ARKit blendshape curves out (Cafe-Talk, ICLR 2025), fast.

The public surface::

    from cafetalk_rt import Animator, AnimateOptions
    anim = Animator().animate_file("speech.wav", AnimateOptions(emotion="happy", intensity=2, seed=0))
    anim.blendshapes  # (T, 52) float32 in [0, 1], ARKIT_NAMES order, at anim.fps

Importing it never imports torch: the default backend is ONNX Runtime on the shipped graphs.
"""
from cafetalk_rt.audio import load_audio
from cafetalk_rt.blendshapes import ARKIT_NAMES, NUM_BLENDSHAPES
from cafetalk_rt.control.emotions import EMOTIONS
from cafetalk_rt.longform.streaming import StreamingAnimator
from cafetalk_rt.options import AnimateOptions, Animation
from cafetalk_rt.pipeline import Animator

__version__ = "0.1.0"
__all__ = ["Animator", "AnimateOptions", "Animation", "StreamingAnimator", "load_audio",
           "ARKIT_NAMES", "NUM_BLENDSHAPES", "EMOTIONS", "__version__"]
