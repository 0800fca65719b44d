"""Voice: speech activity, speaker change and overlap (speech: segmentation-3.0), speaker embeddings (embed:
CAM++ or Resemblyzer), diarization into speaker turns (diarize), and a light VAD for trimming clips (vad)."""
from .diarize import Diarization, diarize
from .embed import CamPlusPlusEncoder, VoiceEncoder, get_voice_encoder
from .speech import LocalSpeakers, analyse_speech
from .vad import SpeechDetector, detect_speech, speech_energy

__all__ = ["SpeechDetector", "detect_speech", "speech_energy", "CamPlusPlusEncoder", "VoiceEncoder",
           "get_voice_encoder", "LocalSpeakers", "analyse_speech", "Diarization", "diarize"]
