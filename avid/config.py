"""Configuration: the packaged defaults in avid/configs/default.yaml, optionally overridden by a user YAML file.

Overrides are merged key by key. Unknown keys and values of the wrong type are rejected with a message naming
the key, so a typo in a config file never silently falls back to a default; every value is then checked against
avid/configs/schema.yaml (numbers finite and in their range, strings one of their choices), so a frame rate of 0 or a
threshold of NaN is refused at load, not found deep in a run.
"""
from __future__ import annotations

import copy
import math
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

# Package data (pyproject.toml's package-data), so a wheel installed anywhere carries its defaults.
DEFAULT_CONFIG_PATH = resources.files("avid") / "configs" / "default.yaml"
SCHEMA_PATH = resources.files("avid") / "configs" / "schema.yaml"
OR_NULL = " or null"          # an interval rule ending so also allows null, where the default is a number
_INTERVAL = re.compile(r"^([\[(])\s*(\S+)\s*,\s*(\S+)\s*([\])])$")


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


def merge_config(base: dict, override: dict, where: str = "") -> dict:
    """``override`` merged key by key over a whole config ``base``; a key ``base`` lacks, or a value of another
    kind, is a ConfigError naming it (``where``: the dotted path of ``base`` in the whole config)."""
    merged = dict(base)
    for key, value in override.items():
        path = f"{where}.{key}" if where else key
        if key not in base:
            raise ConfigError(f"unknown config key {path!r}")
        default = base[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {path!r} must be a mapping")
            merged[key] = merge_config(default, value, path)
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


def _read_yaml(path) -> dict:
    """A YAML mapping from ``path`` (a Path, or the package's own files as importlib.resources gives them)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys")
    return data


@lru_cache(maxsize=1)
def _schema() -> dict:
    return _read_yaml(SCHEMA_PATH)


def _check(data: dict, schema: dict, defaults: dict, where: str = "") -> None:
    """ConfigError naming the first value outside what avid/configs/schema.yaml allows for its key."""
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        rule, default = schema.get(key), defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict):
            _check(value, rule or {}, default, path)
            continue
        if value is None:            # null means something only where the default is null, for text, or where
            nullable = isinstance(rule, str) and rule.endswith(OR_NULL)    # the rule says "or null"
            if rule not in (None, "text") and default is not None and not nullable:
                raise ConfigError(f"config key {path!r} needs a value (default {default!r})")
            continue
        kind = default[0] if isinstance(default, list) and default else default
        for item in value if isinstance(value, list) else [value]:
            problem = _problem(item, rule, whole=type(kind) is int)
            if problem:
                raise ConfigError(f"config key {path!r} {problem}, got {value!r}")


def _problem(value: Any, rule: Any, whole: bool) -> str | None:
    """Why ``value`` breaks ``rule`` (an interval string, a list of choices, or text), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if whole and isinstance(value, float) and not value.is_integer():
        return "must be a whole number"
    if rule == "text":
        return None if isinstance(value, str) else "must be text"
    if isinstance(rule, list):
        return None if value in rule else "must be one of " + ", ".join(map(str, rule))
    if isinstance(rule, str):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return "must be a number"
        rule = rule.removesuffix(OR_NULL)
        opening, low, high, closing = _INTERVAL.match(rule).groups()
        low, high = float(low), float(high)
        above = low <= value if opening == "[" else low < value
        below = value <= high if closing == "]" else value < high
        return None if above and below else f"must be in {rule}"
    return None


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> Config:
    """Load the defaults, then merge the YAML file at ``path`` and a dict of ``overrides`` over them; each layer
    is checked against avid/configs/schema.yaml, so an error names the file that holds the bad value."""
    if not DEFAULT_CONFIG_PATH.is_file():
        raise ConfigError("the packaged default config is missing: this avid install is incomplete (reinstall "
                          "it: pip install avid, or pip install -e . from a source tree)", DEFAULT_CONFIG_PATH)
    defaults = data = _read_yaml(DEFAULT_CONFIG_PATH)
    for source, layer in ((path, _read_yaml(Path(path)) if path is not None else None), (None, overrides)):
        if layer:
            try:
                data = merge_config(data, layer)
                _check(data, _schema(), defaults)
            except ConfigError as err:
                raise ConfigError(err.problem, source) from None
    return _wrap(data)
