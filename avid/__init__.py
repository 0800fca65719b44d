"""avid: audio-visual person recognition. Who is in a video, and who is speaking when.

The Python API (README.md, "Python API"): ``avid.Pipeline`` reads media, ``avid.Gallery`` knows people,
``avid.Library`` searches a collection. Names are imported on first use (PEP 562), so ``import avid`` loads no
model code and no torch.
"""

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS = {
    "Pipeline": "avid.api", "Gallery": "avid.api", "Library": "avid.api",
    "Config": "avid.config", "load_config": "avid.config",
    "AvidError": "avid.errors", "ConfigError": "avid.errors", "MediaError": "avid.errors",
    "NoContentError": "avid.errors", "ModelError": "avid.errors", "StoreError": "avid.errors",
    "IngestResult": "avid.types", "LabelResult": "avid.types", "Person": "avid.types", "Match": "avid.types",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'avid' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value        # found directly next time
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
