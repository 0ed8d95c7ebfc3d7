"""Audit settings from the environment (paths of the key, the witness file, sealing cadence)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SIGNING_KEY = "./harbor-signing-key.pem"
DEFAULT_SEAL_EVERY_EVENTS = 1000
DEFAULT_SEAL_EVERY_MINUTES = 10.0


@dataclass(frozen=True)
class AuditConfig:
    """Where the signing key, the witness file and the exported public keys live."""

    signing_key: Path
    witness_file: Path
    public_keys_dir: Path
    seal_every_events: int  # 0: never by count
    seal_every_minutes: float  # 0: never by time

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuditConfig:
        """``HARBOR_SIGNING_KEY``, ``HARBOR_WITNESS_FILE``, ``HARBOR_PUBLIC_KEYS_DIR``,
        ``HARBOR_SEAL_EVERY_EVENTS``, ``HARBOR_SEAL_EVERY_MINUTES``; the witness file and the
        public keys default to the key's folder."""
        env = os.environ if environ is None else environ
        key = Path(env.get("HARBOR_SIGNING_KEY") or DEFAULT_SIGNING_KEY).expanduser()
        witness = env.get("HARBOR_WITNESS_FILE")
        public = env.get("HARBOR_PUBLIC_KEYS_DIR")
        return cls(
            signing_key=key,
            witness_file=Path(witness).expanduser()
            if witness
            else key.parent / "harbor-witness.txt",
            public_keys_dir=(
                Path(public).expanduser() if public else key.parent / "harbor-public-keys"
            ),
            seal_every_events=int(
                _number(env, "HARBOR_SEAL_EVERY_EVENTS", DEFAULT_SEAL_EVERY_EVENTS)
            ),
            seal_every_minutes=_number(
                env, "HARBOR_SEAL_EVERY_MINUTES", DEFAULT_SEAL_EVERY_MINUTES
            ),
        )


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number") from None
    if value < 0:
        raise ValueError(f"{name}={text!r} must be 0 (off) or more")
    return value
