"""Member identity: a keyed hash of the national ID number, never the number itself."""

from __future__ import annotations

import hashlib
import hmac
import uuid

from domain.values import normalise_id_number

MIN_KEY_BYTES = 16


class MemberIdentity:
    """Derives member ids from ID numbers with a secret key (HMAC-SHA256)."""

    def __init__(self, key: bytes):
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the member-id key must be at least {MIN_KEY_BYTES} bytes long")
        self._key = key

    def digest(self, id_number: str) -> str:
        """The hex HMAC of the normalised ID number (what is stored instead of it)."""
        canonical = normalise_id_number(id_number)
        return hmac.new(self._key, canonical.encode("ascii"), hashlib.sha256).hexdigest()

    def member_id(self, id_number: str) -> uuid.UUID:
        """The member's stream id: the same person always gets the same id."""
        return self.member_id_from_digest(self.digest(id_number))

    @staticmethod
    def member_id_from_digest(digest: str) -> uuid.UUID:
        """The stream id for a digest (first 128 bits, marked as a version-8 UUID)."""
        raw = bytearray(bytes.fromhex(digest)[:16])
        raw[6] = (raw[6] & 0x0F) | 0x80  # version 8: custom
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        return uuid.UUID(bytes=bytes(raw))
