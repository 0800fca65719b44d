"""Configuration: the packaged defaults in configs/default.yaml, optionally overridden by a user YAML file.

Overrides are merged key by key. Unknown keys and values of the wrong type are rejected with a message naming
the key, so a typo in a config file never silently falls back to a default.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


class Config(dict):
    """A nested dict with attribute access: ``cfg.faces.detector.min_face_size``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, Config) else copy.deepcopy(v) for k, v in self.items()}


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return Config({k: _wrap(v) for k, v in value.items()})
    return value


def _merge(base: dict, override: dict, where: str) -> dict:
    merged = dict(base)
    for key, value in override.items():
        path = f"{where}.{key}" if where else key
        if key not in base:
            raise ConfigError(f"unknown config key {path!r}")
        default = base[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {path!r} must be a mapping")
            merged[key] = _merge(default, value, path)
        elif default is not None and value is not None and not _same_kind(default, value):
            raise ConfigError(f"config key {path!r} must be {type(default).__name__}, got {value!r}")
        else:
            merged[key] = value
    return merged


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys")
    return data


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> Config:
    """Load the defaults, then merge the YAML file at ``path`` and a dict of ``overrides`` over them."""
    if not DEFAULT_CONFIG_PATH.exists():
        raise ConfigError(f"{DEFAULT_CONFIG_PATH}: default config missing (install avid with `pip install -e .`)")
    data = _read_yaml(DEFAULT_CONFIG_PATH)
    if path is not None:
        data = _merge(data, _read_yaml(Path(path)), "")
    if overrides:
        data = _merge(data, overrides, "")
    return _wrap(data)
