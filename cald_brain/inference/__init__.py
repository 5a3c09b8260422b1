"""SpeechBrain pretrained interfaces for converted (CALD) models.

Authors
 * cald-brain developers 2026
"""

from cald_brain.inference.asr import CTCTranscriber, SentencePieceCTCTranscriber  # noqa: F401
from cald_brain.inference.classifier import IntentClassifier  # noqa: F401
from cald_brain.inference.package import (  # noqa: F401
    MODEL_SPEC_FILE,
    package_model,
    write_model_spec,
)
