"""A reader for CTranslate2's ``model.bin`` (binary versions 2 to 6): variables and aliases.

Layout (little-endian): u32 binary version, string spec name, u32 spec revision, u32
variable count, then per variable: string name, u8 rank, u32 per dimension, u8 dtype id,
u32 byte count, raw data; then u32 alias count and (alias, target) string pairs. A string
is a u16 length (including a trailing NUL) and its bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tunelab.convert.sources import require_file
from tunelab.errors import TunelabError

# CTranslate2's DataType ids (bfloat16 and 8-bit floats have no numpy dtype: refused).
DTYPES: dict[int, type[np.generic]] = {
    0: np.float32,
    1: np.int8,
    2: np.int16,
    3: np.int32,
    4: np.float16,
}
MIN_VERSION, MAX_VERSION = 2, 6


@dataclass
class Ct2Model:
    """The contents of a CTranslate2 model file."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)


class _Cursor:
    """Sequential little-endian reads over a bytes buffer."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        size = self.unpack("H")
        raw = self.data[self.offset : self.offset + size - 1]
        self.offset += size
        return raw.decode("utf-8")

    def array(self, dtype: type[np.generic], shape: list[int], nbytes: int) -> np.ndarray:
        end = self.offset + nbytes
        if end > len(self.data):
            raise ValueError(
                f"variable data runs past the end of the file ({end} > {len(self.data)})"
            )
        values = np.frombuffer(
            self.data, dtype, count=nbytes // np.dtype(dtype).itemsize, offset=self.offset
        )
        self.offset = end
        return values.reshape(shape)


def parse(data: bytes) -> Ct2Model:
    """Parse a model file's bytes (aliases resolve to their target's array)."""
    cursor = _Cursor(data)
    version = cursor.unpack("I")
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ValueError(f"binary version {version}, expected {MIN_VERSION}-{MAX_VERSION}")
    model = Ct2Model(spec=cursor.string(), revision=cursor.unpack("I"))
    for _ in range(cursor.unpack("I")):
        name = cursor.string()
        shape = [cursor.unpack("I") for _ in range(cursor.unpack("B"))]
        dtype_id = cursor.unpack("B")
        if dtype_id not in DTYPES:
            raise ValueError(f"variable {name} has unsupported dtype id {dtype_id}")
        model.variables[name] = cursor.array(DTYPES[dtype_id], shape, cursor.unpack("I"))
    if cursor.offset < len(data):
        for _ in range(cursor.unpack("I")):
            alias, target = cursor.string(), cursor.string()
            model.variables[alias] = model.variables[target]
    return model


def read(path: str | Path) -> Ct2Model:
    """Read a CTranslate2 ``model.bin``; a one-line TunelabError when it is missing or corrupt."""
    path = require_file(path, "CTranslate2 model file")
    try:
        return parse(path.read_bytes())
    except (ValueError, KeyError, struct.error, UnicodeDecodeError) as exc:
        raise TunelabError(
            f"{path} is not a readable CTranslate2 model file ({exc}); delete it and run "
            "scripts/install.sh --multimodal to fetch it again"
        ) from exc
