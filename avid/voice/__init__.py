"""Voice: voice activity detection (vad), speaker embeddings (embed) and diarization into speaker turns (diarize)."""
from .diarize import diarize
from .embed import VoiceEncoder, analyse_audio
from .vad import SpeechDetector, detect_speech, speech_energy

__all__ = ["SpeechDetector", "detect_speech", "speech_energy", "VoiceEncoder", "analyse_audio", "diarize"]
