"""Text: what was said (Whisper via faster-whisper), as words with times under the speaker turns."""
