"""The library's JSON format, written and read by orjson: the same bytes, in a third of the time.

The library's ``JSONTranscoder`` runs the standard ``json`` module with a Python
hook for every tagged value (``{"_type_": name, "_data_": ...}``), which made
encoding an event about 8 µs and decoding one about 5 µs, the largest single part
of a command's own Python and of a follower's fold. ``FastJSONTranscoder`` keeps
the format byte for byte (tests/test_transcoder.py compares it with the library's
on every event type), so what is stored stays readable by the stock transcoder and
any tool: values orjson would write natively but differently (UUIDs, enums, dates,
dataclasses) are tagged by a walk in Python first, and whatever orjson cannot
represent exactly (integers past 64 bits, floats, NaN, non-string keys) goes
through the library's own code path instead. Selected with ``TRANSCODER_TOPIC`` (store/config.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder, Transcoding

_NONE = type(None)
_RESTORED_IN_PLACE = object()  # _tag_of's answer for an object that was no tag
_INT_MIN, _INT_END = -(2**63), 2**64  # what orjson writes as an integer
_NATIVE = (str, int, float, dict, list, tuple)


class _Fallback(Exception):
    """A value the fast path does not write exactly as the library would."""


class FastJSONTranscoder(JSONTranscoder):
    """``JSONTranscoder``'s format and transcodings, encoded and decoded with orjson."""

    def __init__(self) -> None:
        super().__init__()
        self._decoders: dict[str, Callable[[Any], Any]] | None = None
        self._taggers: dict[type, Callable[[Any], dict[str, Any]]] | None = None

    def encode(self, obj: Any) -> bytes:
        """The library's bytes for ``obj``."""
        try:
            return orjson.dumps(self._tagged(obj))
        except (_Fallback, orjson.JSONEncodeError):
            return super().encode(obj)

    def decode(self, data: bytes) -> Any:
        """The object ``data`` encodes, tagged values restored."""
        try:
            return self._restored(orjson.loads(data))
        except (_Fallback, orjson.JSONDecodeError):
            # NaN, or a float: orjson reads an integer past 64 bits as a float, json exactly.
            return super().decode(data)

    def _tagged(self, obj: Any) -> Any:
        cls = obj.__class__
        if cls is dict:
            out = {}
            for key, value in obj.items():
                if key.__class__ is not str:
                    raise _Fallback  # json turns such keys into strings its own way
                kind = value.__class__
                plain = kind is str or kind is _NONE or kind is bool
                out[key] = value if plain else self._tagged(value)
            return out
        if cls is str or cls is _NONE or cls is bool:
            return obj
        if cls is int:
            if not _INT_MIN <= obj < _INT_END:
                raise _Fallback
            return obj
        if cls is list or cls is tuple:
            return [self._tagged(item) for item in obj]
        taggers = self._taggers
        if taggers is None:
            taggers = self._taggers = {t: self._tagger(t, c) for t, c in self.types.items()}
        tag = taggers.get(cls)
        if tag is None:
            raise _Fallback  # floats, unregistered types: the library's path decides
        return tag(obj)

    def _tagger(self, cls: type, transcoding: Transcoding) -> Callable[[Any], dict[str, Any]]:
        name, encode = transcoding.name, transcoding.encode

        def native(obj: Any) -> dict[str, Any]:
            raise _Fallback

        if issubclass(cls, _NATIVE):
            # json writes a subclass of its own types natively (a str-valued enum as
            # a string, not tagged): the library's path decides.
            return native

        def tag(obj: Any) -> dict[str, Any]:
            data = encode(obj)
            if data.__class__ is not str:
                data = self._tagged(data)
            return {"_type_": name, "_data_": data}

        return tag

    def register(self, transcoding: Transcoding) -> None:
        """Register ``transcoding`` (as the library does), and forget the decoder table."""
        super().register(transcoding)
        self._decoders = None
        self._taggers = None

    def _restored(self, value: Any) -> Any:
        cls = value.__class__
        if cls is dict:
            tag = self._tag_of(value)
            return value if tag is _RESTORED_IN_PLACE else tag
        if cls is list:
            return [self._restored(item) for item in value]
        if cls is float:
            raise _Fallback
        return value

    def _tag_of(self, obj: dict[str, Any]) -> Any:
        """The value a tagged object stands for, or _RESTORED_IN_PLACE for a plain one."""
        decoders = self._decoders
        if decoders is None:
            decoders = self._decoders = {n: t.decode for n, t in self.names.items()}
        if len(obj) == 2 and "_type_" in obj and "_data_" in obj:
            # The library's hook runs on the innermost objects first: _data_ is
            # restored before its own tag is applied, as here.
            data = obj["_data_"]
            kind = data.__class__
            if kind is dict or kind is list or kind is float:
                data = self._restored(data)
            decode = decoders.get(obj["_type_"])
            if decode is None:  # the library's error for an unknown tag
                return self._decode_obj({"_type_": obj["_type_"], "_data_": data})
            return decode(data)
        # An event's fields, or any plain object: one loop, no call per plain value.
        for key, item in obj.items():
            kind = item.__class__
            if kind is dict:
                if len(item) == 2 and "_type_" in item and "_data_" in item:
                    data = item["_data_"]
                    if data.__class__ is str:
                        decode = decoders.get(item["_type_"])
                        if decode is not None:
                            obj[key] = decode(data)
                            continue
                tag = self._tag_of(item)
                if tag is not _RESTORED_IN_PLACE:
                    obj[key] = tag
            elif kind is list:
                obj[key] = self._restored(item)
            elif kind is float:
                raise _Fallback
        return _RESTORED_IN_PLACE
