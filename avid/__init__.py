"""avid: audio-visual person recognition. Who is in a video, and who is speaking when."""

__version__ = "0.1.0"
