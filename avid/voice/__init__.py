"""Voice: voice activity detection (vad), speaker embeddings (embed) and diarization into speaker turns (diarize)."""
