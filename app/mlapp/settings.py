"""The server's settings, read once from the environment at start-up."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlapp import contract, store

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
    port: int = contract.PORT
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
    username = env.get(contract.ENV_AUTH_USERNAME, "")
    password = env.get(contract.ENV_AUTH_PASSWORD, "")
    if not username or not password:
        missing = [k for k in (contract.ENV_AUTH_USERNAME, contract.ENV_AUTH_PASSWORD) if not env.get(k)]
        raise SettingsError(
            f"{' and '.join(missing)} must be set: the server refuses to serve without basic-auth credentials"
        )
    if ":" in username:
        raise SettingsError(f"{contract.ENV_AUTH_USERNAME} must not contain ':' (basic auth cannot carry it)")

    raw_level = env.get(contract.ENV_LOG_LEVEL, "")
    level = raw_level.strip().upper() or "INFO"
    if level not in LOG_LEVELS:
        raise SettingsError(f"{contract.ENV_LOG_LEVEL} must be one of {', '.join(LOG_LEVELS)}, got {raw_level!r}")

    labels_raw = env.get(contract.ENV_LABELS_FILE, "").strip()
    return Settings(
        port=_int(env, contract.ENV_PORT, contract.PORT, 1, 65535),
        host=env.get(contract.ENV_HOST, "").strip() or "0.0.0.0",  # noqa: S104
        model_name=_segment(env, contract.ENV_MODEL_NAME, "digits"),
        model_dir=Path(env.get(contract.ENV_MODEL_DIR, "").strip() or contract.MODEL_MOUNT),
        model_version=_segment(env, contract.ENV_MODEL_VERSION, "1"),
        labels_file=Path(labels_raw) if labels_raw else None,
        username=username,
        password=password,
        log_level=level,
        max_body_bytes=_int(env, contract.ENV_MAX_BODY_BYTES, 8 * 1024 * 1024, 1024, 1 << 30),
        max_batch=_int(env, contract.ENV_MAX_BATCH, 64, 1, 4096),
    )


def read_labels(path: Path) -> list[str]:
    """One label per line, line i naming class i; blank trailing lines are ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"{contract.ENV_LABELS_FILE}: cannot read {path}: {e}") from e
    labels = [line.strip() for line in text.splitlines()]
    while labels and not labels[-1]:
        labels.pop()
    if not labels or not all(labels):
        raise SettingsError(f"{contract.ENV_LABELS_FILE}: {path} must hold one non-empty label per line")
    return labels
