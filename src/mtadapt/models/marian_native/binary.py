"""Read Marian-nmt checkpoints: the binary `.bin` format (float32 and int8 "intgemm alphas")
and float32 `.npz` archives.

Layout of a Marian `.bin` file (all integers little-endian):

    u64 version, u64 count
    count x (u64 name_length, u64 type, u64 shape_length, u64 data_length)
    names, NUL-terminated, back to back
    shapes, int32 each, shape_length values per entry, back to back
    u64 padding_length, then that many bytes (aligns the data blobs)
    data blobs, in entry order, data_length bytes each

Entry types we understand:
    0x404  float32, row-major in the stated shape.
    0x4101 int8 "intgemm alphas": prod(shape) int8 values then one float32 multiplier;
           W = q / multiplier. Every int8 matrix except `Wemb` is stored transposed
           relative to its shape (intgemm's preferred B layout), so we read it as
           (cols, rows) and transpose back.
Entries named `special:*` hold text (e.g. the YAML model config) and `*_QuantMultA` hold
activation quantisation multipliers we do not need; they are returned separately / skipped.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FLOAT32_TYPE = 0x404
INT8_ALPHAS_TYPE = 0x4101
# Types whose bytes we can hand back unchanged as text for `special:*` entries (int8/uint8/char).
_TEXT_TYPES = {0x101, 0x201, 0x0}
_VALID_TYPES = {FLOAT32_TYPE: "float32 (0x404)", INT8_ALPHAS_TYPE: "int8 intgemm alphas (0x4101)"}


class MarianFormatError(ValueError):
    """A Marian checkpoint could not be read; the message names the file and the problem."""


@dataclass
class MarianCheckpoint:
    """Tensors of a Marian model, in Marian's names and layouts (float32 numpy arrays).

    `special` holds the `special:*` text entries (for example `special:model.yml`).
    """

    tensors: dict[str, np.ndarray]
    special: dict[str, str] = field(default_factory=dict)


def _read_u64(buf: bytes, offset: int, count: int) -> tuple[list[int], int]:
    values = list(struct.unpack_from(f"<{count}Q", buf, offset))
    return values, offset + 8 * count


def read_marian_bin(path: str | Path) -> MarianCheckpoint:
    """Read a Marian `.bin` model file into float32 arrays.

    Args:
        path: the `.bin` file.

    Raises:
        MarianFormatError: truncated file or an entry type we cannot decode (the entry
            and its type are named, with the valid types).
    """
    path = Path(path)
    buf = path.read_bytes()
    try:
        (_version, count), offset = _read_u64(buf, 0, 2)
        headers = []
        for _ in range(count):
            (name_len, dtype, shape_len, data_len), offset = _read_u64(buf, offset, 4)
            headers.append((name_len, dtype, shape_len, data_len))
        names = []
        for name_len, *_ in headers:
            names.append(buf[offset : offset + name_len].rstrip(b"\0").decode("utf-8"))
            offset += name_len
        shapes = []
        for _, _, shape_len, _ in headers:
            shapes.append(tuple(struct.unpack_from(f"<{shape_len}i", buf, offset)))
            offset += 4 * shape_len
        (padding,), offset = _read_u64(buf, offset, 1)
        offset += padding
    except struct.error as exc:
        raise MarianFormatError(f"{path}: truncated or not a Marian .bin file ({exc})") from exc

    tensors: dict[str, np.ndarray] = {}
    special: dict[str, str] = {}
    for name, (_, dtype, _, data_len), shape in zip(names, headers, shapes):
        blob = buf[offset : offset + data_len]
        if len(blob) != data_len:
            raise MarianFormatError(
                f"{path}: entry {name!r} needs {data_len} bytes but the file ends early"
            )
        offset += data_len
        if name.startswith("special:"):
            special[name[len("special:") :]] = blob.rstrip(b"\0").decode("utf-8", "replace")
            continue
        if name.endswith("_QuantMultA"):
            continue
        tensors[name] = _decode_entry(path, name, dtype, shape, blob)
    return MarianCheckpoint(tensors=tensors, special=special)


def _decode_entry(path: Path, name: str, dtype: int, shape: tuple[int, ...], blob: bytes) -> np.ndarray:
    size = int(np.prod(shape)) if shape else 1
    if dtype == FLOAT32_TYPE:
        if len(blob) != 4 * size:
            raise MarianFormatError(
                f"{path}: float32 entry {name!r} of shape {shape} has {len(blob)} bytes, "
                f"expected {4 * size}"
            )
        return np.frombuffer(blob, dtype="<f4").reshape(shape).astype(np.float32)
    if dtype == INT8_ALPHAS_TYPE:
        if len(blob) < size + 4:
            raise MarianFormatError(
                f"{path}: int8 entry {name!r} of shape {shape} has {len(blob)} bytes, "
                f"expected at least {size + 4} (values then a float32 multiplier)"
            )
        q = np.frombuffer(blob[:size], dtype=np.int8).astype(np.float32)
        (multiplier,) = struct.unpack_from("<f", blob, size)
        w = q / np.float32(multiplier)
        if name == "Wemb" or len(shape) != 2:
            return w.reshape(shape)
        # Stored transposed: the bytes are the (cols, rows) matrix.
        return np.ascontiguousarray(w.reshape(shape[1], shape[0]).T)
    valid = ", ".join(_VALID_TYPES.values())
    raise MarianFormatError(
        f"{path}: entry {name!r} has unknown type {dtype:#x}; valid types are {valid}"
    )


def read_marian_npz(path: str | Path) -> MarianCheckpoint:
    """Read a float32 Marian `.npz` checkpoint (no pickle: `allow_pickle=False`).

    Raises:
        MarianFormatError: not a zip archive, or an array that is not float32-convertible.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise MarianFormatError(f"{path}: not an .npz (zip) archive")
    tensors: dict[str, np.ndarray] = {}
    special: dict[str, str] = {}
    with np.load(path, allow_pickle=False) as archive:
        for name in archive.files:
            array = archive[name]
            if name.startswith("special:"):
                # Marian stores the YAML config as an int8/char array.
                special[name[len("special:") :]] = array.tobytes().rstrip(b"\0").decode("utf-8", "replace")
                continue
            if name.endswith("_QuantMultA"):
                continue
            if array.dtype.kind not in "fiu":
                raise MarianFormatError(f"{path}: array {name!r} has dtype {array.dtype}; expected float32")
            tensors[name] = array.astype(np.float32)
    return MarianCheckpoint(tensors=tensors, special=special)


def read_marian(path: str | Path) -> MarianCheckpoint:
    """Read a Marian checkpoint, choosing the reader by suffix (`.npz` or `.bin`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Marian checkpoint not found: {path}")
    if path.suffix == ".npz":
        return read_marian_npz(path)
    if path.suffix == ".bin":
        return read_marian_bin(path)
    raise MarianFormatError(f"{path}: unknown checkpoint suffix {path.suffix!r}; valid: .bin, .npz")


# Lexical shortlist (`lex.<first>.<best>.<pair>.s2t.bin`), Marian's BinaryShortlistGenerator format:
#     u64 magic, u64 checksum, u64 first_num, u64 best_num, u64 offsets_size, u64 lists_size
#     u64 offsets[offsets_size]   (offsets_size = source vocab + 1)
#     u32 lists[lists_size]       target ids for source word w: lists[offsets[w]:offsets[w+1]]
SHORTLIST_MAGIC = 0xF11A48D5013417F5


@dataclass
class LexicalShortlist:
    """Candidate target words per source word; a sentence may only produce the union of
    the `first_num` most frequent target ids and the candidates of its source words."""

    first_num: int
    best_num: int
    offsets: np.ndarray  # (source_vocab + 1,) int64
    lists: np.ndarray  # (total,) int64

    def candidates(self, source_ids: list[int]) -> np.ndarray:
        """Sorted unique target ids allowed for one sentence (its ids, padding excluded)."""
        words = np.unique(np.asarray(source_ids, dtype=np.int64))
        words = words[(words >= 0) & (words < len(self.offsets) - 1)]
        parts = [np.arange(self.first_num, dtype=np.int64)]
        parts += [self.lists[self.offsets[w] : self.offsets[w + 1]] for w in words]
        return np.unique(np.concatenate(parts))


def read_lexical_shortlist(path: str | Path) -> LexicalShortlist:
    """Read a Marian binary lexical shortlist.

    Raises:
        MarianFormatError: wrong magic number or a size that does not match the header.
    """
    path = Path(path)
    buf = path.read_bytes()
    if len(buf) < 48:
        raise MarianFormatError(f"{path}: too short for a Marian binary shortlist")
    magic, _checksum, first_num, best_num, offsets_size, lists_size = struct.unpack_from("<6Q", buf, 0)
    if magic != SHORTLIST_MAGIC:
        raise MarianFormatError(
            f"{path}: magic {magic:#x} is not a Marian binary shortlist ({SHORTLIST_MAGIC:#x}); "
            "text shortlists are not supported"
        )
    expected = 48 + 8 * offsets_size + 4 * lists_size
    if len(buf) != expected:
        raise MarianFormatError(f"{path}: {len(buf)} bytes, header implies {expected}")
    offsets = np.frombuffer(buf, dtype="<u8", count=offsets_size, offset=48).astype(np.int64)
    lists = np.frombuffer(buf, dtype="<u4", count=lists_size, offset=48 + 8 * offsets_size).astype(np.int64)
    return LexicalShortlist(first_num=int(first_num), best_num=int(best_num), offsets=offsets, lists=lists)
