"""The server's settings, read once from the environment at start-up."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlapp import store

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(Exception):
    """A variable of the environment has a value the server cannot use."""


@dataclass(frozen=True)
class Settings:
    model_name: str
    model_dir: Path
    model_version: str
    username: str
    password: str = field(repr=False)
    port: int = 8080
    host: str = "0.0.0.0"  # noqa: S104 - a container serves on every interface
    labels_file: Path | None = None
    log_level: str = "INFO"
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch: int = 64

    @property
    def log_level_number(self) -> int:
        return int(logging.getLevelName(self.log_level))


def _int(env: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key} must be an integer from {lo} to {hi}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{key} must be an integer from {lo} to {hi}, got {value}")
    return value


def _segment(env: Mapping[str, str], key: str, default: str) -> str:
    raw = env.get(key, "").strip() or default
    try:
        return store.check_segment(key, raw)
    except ValueError as e:
        raise SettingsError(str(e)) from e


def from_env(env: Mapping[str, str]) -> Settings:
    """Build Settings from ``env``; raise SettingsError naming the variable on a bad value."""
    username = env.get("MLAPP_AUTH_USERNAME", "")
    password = env.get("MLAPP_AUTH_PASSWORD", "")
    if not username or not password:
        missing = [k for k in ("MLAPP_AUTH_USERNAME", "MLAPP_AUTH_PASSWORD") if not env.get(k)]
        raise SettingsError(
            f"{' and '.join(missing)} must be set: the server refuses to serve without basic-auth credentials"
        )
    if ":" in username:
        raise SettingsError("MLAPP_AUTH_USERNAME must not contain ':' (basic auth cannot carry it)")

    level = env.get("MLAPP_LOG_LEVEL", "").strip().upper() or "INFO"
    if level not in LOG_LEVELS:
        raise SettingsError(f"MLAPP_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {env['MLAPP_LOG_LEVEL']!r}")

    labels_raw = env.get("MLAPP_LABELS_FILE", "").strip()
    return Settings(
        port=_int(env, "MLAPP_PORT", 8080, 1, 65535),
        host=env.get("MLAPP_HOST", "").strip() or "0.0.0.0",  # noqa: S104
        model_name=_segment(env, "MLAPP_MODEL_NAME", "digits"),
        model_dir=Path(env.get("MLAPP_MODEL_DIR", "").strip() or "/models"),
        model_version=_segment(env, "MLAPP_MODEL_VERSION", "1"),
        labels_file=Path(labels_raw) if labels_raw else None,
        username=username,
        password=password,
        log_level=level,
        max_body_bytes=_int(env, "MLAPP_MAX_BODY_BYTES", 8 * 1024 * 1024, 1024, 1 << 30),
        max_batch=_int(env, "MLAPP_MAX_BATCH", 64, 1, 4096),
    )


def read_labels(path: Path) -> list[str]:
    """One label per line, line i naming class i; blank trailing lines are ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"MLAPP_LABELS_FILE: cannot read {path}: {e}") from e
    labels = [line.strip() for line in text.splitlines()]
    while labels and not labels[-1]:
        labels.pop()
    if not labels or not all(labels):
        raise SettingsError(f"MLAPP_LABELS_FILE: {path} must hold one non-empty label per line")
    return labels
