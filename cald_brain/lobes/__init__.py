"""Task models built around pretrained encoders (shared by recipes and inference).

Authors
 * cald-brain developers 2026
"""

from cald_brain.lobes.speech_classifier import (  # noqa: F401
    ClassifierOutput,
    SpeechClassifier,
    build_speech_classifier,
    masked_mean,
)
from cald_brain.lobes.speech_ctc import CTCOutput, SpeechCTC, build_speech_ctc  # noqa: F401
from cald_brain.lobes.speech_encoders import (  # noqa: F401
    EncoderOutput,
    Wav2Vec2Encoder,
    WhisperEncoder,
    WhisperLogMel,
    build_speech_encoder,
)
