"""Linear-time sequence mixers: Mamba2, BiMamba2, Mamba and Linformer.

Every mixer is built from plain keyword arguments and called as
``mixer(x, lengths=None)`` with ``x`` of shape ``[batch, time, channels]`` and
SpeechBrain-style relative ``lengths``. Importing this package registers them
under the names ``"mamba2"``, ``"bimamba2"``, ``"mamba"`` and ``"linformer"``.
"""

from cald_brain.nnet.registry import (  # noqa: F401
    available_mixers,
    build_mixer,
    get_mixer,
    register_mixer,
)
from cald_brain.nnet.mamba2 import Mamba2  # noqa: F401  (registers "mamba2")
from cald_brain.nnet.bimamba2 import BiMamba2  # noqa: F401
from cald_brain.nnet.mamba import Mamba  # noqa: F401
from cald_brain.nnet.linformer import LinformerSelfAttention  # noqa: F401
