"""Helpers shared by the command modules."""
from __future__ import annotations

import argparse

from ..config import Config, load_config


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(getattr(args, "config", None))
