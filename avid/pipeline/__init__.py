"""The pipeline: one recording from media to people. Models loaded once (models), the streaming ingest of faces
and speech (ingest), which face talks (associate, active_speaker, talking_face), naming (name), the whole
who-speaks-when job (label), and enrolment and queries from media files (identify).
"""
