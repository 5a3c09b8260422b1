"""Task models built around pretrained encoders (shared by recipes and inference).

Authors
 * cald-brain developers 2026
"""

from cald_brain.lobes.wav2vec2_classifier import (  # noqa: F401
    ClassifierOutput,
    Wav2Vec2Classifier,
    build_wav2vec2_classifier,
)
