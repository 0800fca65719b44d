"""Evaluation helpers: scoring the pipeline's outputs against references (diarization error rates, RTTM)."""
