"""Preview an animation: a face video with sound (``.mp4``) or a self-contained browser page
(``.html``). Entry point: ``render_preview``; the heavy modules load on first use."""
from __future__ import annotations

from cafetalk_rt.errors import MissingDependencyError

__all__ = ["MissingDependencyError"]
