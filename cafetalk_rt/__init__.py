"""cafetalk_rt: the deployable runtime. Importing it never imports torch."""
from cafetalk_rt.blendshapes import ARKIT_NAMES, NUM_BLENDSHAPES
from cafetalk_rt.control.emotions import EMOTIONS

__version__ = "0.1.0"
__all__ = ["ARKIT_NAMES", "NUM_BLENDSHAPES", "EMOTIONS", "__version__"]
