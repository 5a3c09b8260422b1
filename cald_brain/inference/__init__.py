"""SpeechBrain pretrained interfaces for converted (CALD) models.

Authors
 * cald-brain developers 2026
"""

from cald_brain.inference.asr import (  # noqa: F401
    CTCTranscriber,
    SentencePieceCTCTranscriber,
    benchmark_long_form,
    load_transcriber,
    long_form_table,
    transcribe_path,
)
from cald_brain.inference.classifier import IntentClassifier  # noqa: F401
from cald_brain.inference.speaker import SpeakerClassifier  # noqa: F401
from cald_brain.inference.package import (  # noqa: F401
    MODEL_SPEC_FILE,
    package_model,
    write_model_spec,
)
