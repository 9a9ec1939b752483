"""The server's settings, read once from the environment (and the files it names) at start-up."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlapp import contract, store

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_BODY_BYTES = 8 * 1024 * 1024
# Failed logins per client address before 429 (serve/auth.py, which refills them).
FAILED_LOGIN_BURST = 20
# A password file holds a few dozen bytes (a Secret's key, mounted by the kubelet): read at most this much,
# so that a wrong path (a log, a model) is refused instead of read whole.
MAX_PASSWORD_FILE_BYTES = 4096


@dataclass(frozen=True)
class Limits:
    """What the clients of one listener may hold, enforced by ``serve.http``; sized for a 512 Mi pod (app/README.md)."""

    max_connections: int = 512
    max_url_bytes: int = 8 * 1024
    max_header_bytes: int = 16 * 1024  # request line and headers together
    max_header_count: int = 100
    max_body_bytes: int = MAX_BODY_BYTES
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    keep_alive_timeout: float = 5.0
    max_pipelined: int = 8
    # A client that does not read its answers stops being read from at this much buffered.
    write_buffer_bytes: int = 64 * 1024
    # Body bytes read ahead of the handler before the connection stops being read.
    read_ahead_bytes: int = 256 * 1024
    # Body bytes all requests of the process hold at once; over it, 503 (retry).
    max_body_bytes_held: int = 64 * 1024 * 1024
    # The outputs one answer may carry (about: JSON text is estimated), whatever the model makes of its
    # inputs; over it, 413 naming the way out (fewer rows or outputs).
    max_answer_bytes: int = 64 * 1024 * 1024


class SettingsError(ValueError):
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
    max_batch: int = 64
    metrics_port: int = contract.METRICS_PORT
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None  # both set, or neither (plain HTTP)
    limits: Limits = field(default_factory=Limits)
    drain_seconds: float = contract.DRAIN_SECONDS
    failed_login_burst: int = FAILED_LOGIN_BURST
    intra_op_threads: int = 1  # ONNX Runtime's threads for one run (serve/model.py)
    execution_provider: str = "cpu"  # one of contract.EXECUTION_PROVIDERS (serve/model.py)

    @property
    def plain_http(self) -> bool:
        return self.tls_cert_file is None

    @property
    def max_body_bytes(self) -> int:
        return self.limits.max_body_bytes

    @property
    def log_level_number(self) -> int:
        return int(logging.getLevelName(self.log_level))


def env_int(env: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    """Variable ``key`` as an integer in [lo, hi]; ``default`` when unset or empty."""
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


def _seconds(env: Mapping[str, str], key: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{key} must be a number of seconds from {lo:g} to {hi:g}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{key} must be a number of seconds from {lo:g} to {hi:g}, got {value:g}")
    return value


# Operators' and tests' overrides of the connection limits (http.Limits); the pods leave them unset.
ENV_MAX_CONNECTIONS = "MLAPP_MAX_CONNECTIONS"
ENV_HEADER_TIMEOUT = "MLAPP_HEADER_TIMEOUT"
ENV_BODY_TIMEOUT = "MLAPP_BODY_TIMEOUT"
ENV_KEEP_ALIVE_TIMEOUT = "MLAPP_KEEP_ALIVE_TIMEOUT"
ENV_DRAIN_SECONDS = "MLAPP_DRAIN_SECONDS"
ENV_FAILED_LOGIN_BURST = "MLAPP_FAILED_LOGIN_BURST"
ENV_MAX_BODY_BYTES_HELD = "MLAPP_MAX_BODY_BYTES_HELD"
ENV_MAX_ANSWER_BYTES = "MLAPP_MAX_ANSWER_BYTES"
# ONNX Runtime's intra-op threads: 1 suits the pod's default CPU limit and small models; a large model on
# a pod given more CPUs runs faster with as many threads.
ENV_INTRA_OP_THREADS = "MLAPP_INTRA_OP_THREADS"


def _limits(env: Mapping[str, str], max_body_bytes: int) -> Limits:
    d = Limits()
    return Limits(
        max_connections=env_int(env, ENV_MAX_CONNECTIONS, d.max_connections, 1, 65536),
        max_body_bytes=max_body_bytes,
        header_timeout=_seconds(env, ENV_HEADER_TIMEOUT, d.header_timeout, 0.1, 300),
        body_timeout=_seconds(env, ENV_BODY_TIMEOUT, d.body_timeout, 0.1, 3600),
        keep_alive_timeout=_seconds(env, ENV_KEEP_ALIVE_TIMEOUT, d.keep_alive_timeout, 0.1, 300),
        max_body_bytes_held=env_int(env, ENV_MAX_BODY_BYTES_HELD, d.max_body_bytes_held, max_body_bytes, 1 << 30),
        max_answer_bytes=env_int(env, ENV_MAX_ANSWER_BYTES, d.max_answer_bytes, 1024, 1 << 30),
    )


def _tls(env: Mapping[str, str]) -> tuple[Path, Path] | tuple[None, None]:
    """The certificate and key files, or plain HTTP when (and only when) it is asked for."""
    plain_raw = env.get(contract.ENV_PLAIN_HTTP, "").strip()
    if plain_raw not in ("", "0", "1"):
        raise SettingsError(f"{contract.ENV_PLAIN_HTTP} must be 1 (serve plain HTTP) or 0, got {plain_raw!r}")
    cert = env.get(contract.ENV_TLS_CERT_FILE, "").strip()
    key = env.get(contract.ENV_TLS_KEY_FILE, "").strip()
    if plain_raw == "1":
        if cert or key:
            raise SettingsError(f"{contract.ENV_PLAIN_HTTP}=1 and a TLS certificate or key are both set: choose one")
        return None, None
    if not cert or not key:
        missing = [k for k, v in ((contract.ENV_TLS_CERT_FILE, cert), (contract.ENV_TLS_KEY_FILE, key)) if not v]
        raise SettingsError(
            f"{' and '.join(missing)} must be set: the server speaks TLS "
            f"(for plain HTTP on a laptop, set {contract.ENV_PLAIN_HTTP}=1 instead)"
        )
    for name, path in ((contract.ENV_TLS_CERT_FILE, cert), (contract.ENV_TLS_KEY_FILE, key)):
        if not Path(path).is_file():
            raise SettingsError(f"{name}: {path} is not a readable file")
    return Path(cert), Path(key)


def _execution_provider(env: Mapping[str, str]) -> str:
    raw = env.get(contract.ENV_EXECUTION_PROVIDER, "")
    value = raw.strip().lower() or contract.EXECUTION_PROVIDERS[0]
    if value not in contract.EXECUTION_PROVIDERS:
        raise SettingsError(
            f"{contract.ENV_EXECUTION_PROVIDER} must be one of {', '.join(contract.EXECUTION_PROVIDERS)} "
            f"(cpu: ONNX Runtime on the CPU; cuda: on the GPU, from the server's GPU image), got {raw!r}"
        )
    return value


def _segment(env: Mapping[str, str], key: str, default: str) -> str:
    raw = env.get(key, "").strip() or default
    try:
        return store.check_segment(key, raw)
    except ValueError as e:
        raise SettingsError(str(e)) from e


def read_password_file(path: Path) -> str:
    """The password a file holds: its one line, without the line's end (``echo`` and
    ``kubectl create secret --from-file`` leave one). Bounded; never echoes what it read."""
    name = contract.ENV_AUTH_PASSWORD_FILE
    try:
        raw = store.read_at_most(path, MAX_PASSWORD_FILE_BYTES)
    except store.FileTooLarge:
        raise SettingsError(f"{name}: {path} is over {MAX_PASSWORD_FILE_BYTES} bytes, not a password file") from None
    except OSError as e:
        raise SettingsError(f"{name}: cannot read {path}: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"{name}: {path} is not UTF-8 text") from None
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        raise SettingsError(f"{name}: {path} is empty: it must hold the basic-auth password")
    if "\n" in password or "\r" in password:
        raise SettingsError(f"{name}: {path} must hold the password on one line")
    return password


def _credentials(env: Mapping[str, str]) -> tuple[str, str]:
    """The basic-auth username, and the password from the file the pods mount (ENV_AUTH_PASSWORD_FILE) or,
    on a laptop, from the environment (ENV_AUTH_PASSWORD): one or the other."""
    username = env.get(contract.ENV_AUTH_USERNAME, "")
    password_file = env.get(contract.ENV_AUTH_PASSWORD_FILE, "").strip()
    password = env.get(contract.ENV_AUTH_PASSWORD, "")
    if password_file and password:
        raise SettingsError(
            f"{contract.ENV_AUTH_PASSWORD_FILE} and {contract.ENV_AUTH_PASSWORD} are both set: choose one"
        )
    missing = [contract.ENV_AUTH_USERNAME] if not username else []
    if not password_file and not password:
        missing.append(f"{contract.ENV_AUTH_PASSWORD_FILE} (or {contract.ENV_AUTH_PASSWORD})")
    if missing:
        raise SettingsError(
            f"{' and '.join(missing)} must be set: the server refuses to serve without basic-auth credentials"
        )
    if ":" in username:
        raise SettingsError(f"{contract.ENV_AUTH_USERNAME} must not contain ':' (basic auth cannot carry it)")
    return username, read_password_file(Path(password_file)) if password_file else password


def from_env(env: Mapping[str, str]) -> Settings:
    """Build Settings from ``env``; raise SettingsError naming the variable on a bad value."""
    username, password = _credentials(env)

    raw_level = env.get(contract.ENV_LOG_LEVEL, "")
    level = raw_level.strip().upper() or "INFO"
    if level not in LOG_LEVELS:
        raise SettingsError(f"{contract.ENV_LOG_LEVEL} must be one of {', '.join(LOG_LEVELS)}, got {raw_level!r}")

    labels_raw = env.get(contract.ENV_LABELS_FILE, "").strip()
    max_body_bytes = env_int(env, contract.ENV_MAX_BODY_BYTES, MAX_BODY_BYTES, 1024, 64 * 1024 * 1024)
    cert, key = _tls(env)
    return Settings(
        port=env_int(env, contract.ENV_PORT, contract.PORT, 1, 65535),
        host=env.get(contract.ENV_HOST, "").strip() or "0.0.0.0",  # noqa: S104
        model_name=_segment(env, contract.ENV_MODEL_NAME, "digits"),
        model_dir=Path(env.get(contract.ENV_MODEL_DIR, "").strip() or contract.MODEL_MOUNT),
        model_version=_segment(env, contract.ENV_MODEL_VERSION, "1"),
        labels_file=Path(labels_raw) if labels_raw else None,
        username=username,
        password=password,
        log_level=level,
        max_batch=env_int(env, contract.ENV_MAX_BATCH, 64, 1, 4096),
        metrics_port=env_int(env, contract.ENV_METRICS_PORT, contract.METRICS_PORT, 1, 65535),
        tls_cert_file=cert,
        tls_key_file=key,
        limits=_limits(env, max_body_bytes),
        drain_seconds=_seconds(env, ENV_DRAIN_SECONDS, contract.DRAIN_SECONDS, 0, contract.DRAIN_SECONDS),
        failed_login_burst=env_int(env, ENV_FAILED_LOGIN_BURST, FAILED_LOGIN_BURST, 1, 1_000_000),
        intra_op_threads=env_int(env, ENV_INTRA_OP_THREADS, 1, 1, 256),
        execution_provider=_execution_provider(env),
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
