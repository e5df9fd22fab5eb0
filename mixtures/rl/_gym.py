"""The one place that imports gymnasium, an optional dependency needed only by :mod:`mixtures.rl`.

The rest of mixproc (``mixtures``, ``mixtures.experts``, ``mixtures.gradmix``, ``gp``,
``gmm``) never imports this module, so it works without gymnasium installed.
"""

from __future__ import annotations

try:
    import gymnasium as gym
except ImportError as err:
    raise ImportError(
        "mixtures.rl needs gymnasium, which is not installed. Install the reinforcement "
        'learning extra with: pip install "mixproc[rl]" (or pip install gymnasium).'
    ) from err

__all__ = ["gym"]
