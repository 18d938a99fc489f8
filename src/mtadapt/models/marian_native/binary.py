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
Entries named `special:*` hold text (e.g. the YAML model config); `<matrix>_QuantMultA`
hold the activation multipliers of `gemm-precision: int8shiftAlphaAll` (127 / the calibrated
max |activation| entering that matrix; `none_QuantMultA` is the shortlisted output layer's).
Both are returned apart from the tensors, as are the int8 matrices as stored.

Marian's writer (mirrored by `write_marian_bin`) pads the header so that the first blob
starts at a multiple of 256 bytes, and pads every tensor blob to a multiple of 256 bytes.
"""

from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtadapt.errors import ModelError

FLOAT32_TYPE = 0x404
INT8_ALPHAS_TYPE = 0x4101
# Types whose bytes we can hand back unchanged as text for `special:*` entries (int8/uint8/char).
_TEXT_TYPES = {0x101, 0x201, 0x0}
_VALID_TYPES = {FLOAT32_TYPE: "float32 (0x404)", INT8_ALPHAS_TYPE: "int8 intgemm alphas (0x4101)"}


class MarianFormatError(ModelError):
    """A Marian checkpoint could not be read; the message names the file and the problem."""


@dataclass(frozen=True)
class QuantizedMatrix:
    """An int8 matrix as Marian ships it: W ~= q / multiplier.

    `q` is in the logical (rows, cols) layout of the Marian name (the file's transposition
    undone), so `q / multiplier` equals `MarianCheckpoint.tensors[name]` exactly.
    """

    q: np.ndarray  # (rows, cols) int8
    multiplier: float


@dataclass
class MarianCheckpoint:
    """Tensors of a Marian model, in Marian's names and layouts (float32 numpy arrays).

    `special` holds the `special:*` text entries (for example `special:model.yml`);
    `quantized` the int8 matrices of an intgemm-alphas file as stored; `quant_mult_a` the
    activation multipliers (`<name>_QuantMultA`, keyed by `<name>`).
    """

    tensors: dict[str, np.ndarray]
    special: dict[str, str] = field(default_factory=dict)
    quantized: dict[str, QuantizedMatrix] = field(default_factory=dict)
    quant_mult_a: dict[str, float] = field(default_factory=dict)


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

    checkpoint = MarianCheckpoint(tensors={})
    for name, (_, dtype, _, data_len), shape in zip(names, headers, shapes):
        blob = buf[offset : offset + data_len]
        if len(blob) != data_len:
            raise MarianFormatError(
                f"{path}: entry {name!r} needs {data_len} bytes but the file ends early"
            )
        offset += data_len
        if name.startswith("special:"):
            checkpoint.special[name[len("special:") :]] = blob.rstrip(b"\0").decode("utf-8", "replace")
            continue
        if name.endswith("_QuantMultA"):
            # float32, except Marian's converter writes `Wemb_QuantMultA` as an int8 (1, 1)
            # entry (q = 127, then its multiplier): its value is q / multiplier
            if dtype == FLOAT32_TYPE and len(blob) >= 4:
                checkpoint.quant_mult_a[name[: -len("_QuantMultA")]] = struct.unpack_from("<f", blob, 0)[0]
            elif dtype == INT8_ALPHAS_TYPE and len(blob) >= 5:
                q = struct.unpack_from("<b", blob, 0)[0]
                checkpoint.quant_mult_a[name[: -len("_QuantMultA")]] = q / struct.unpack_from("<f", blob, 1)[0]
            continue
        checkpoint.tensors[name] = _decode_entry(path, name, dtype, shape, blob, checkpoint.quantized)
    return checkpoint


def _decode_entry(
    path: Path, name: str, dtype: int, shape: tuple[int, ...], blob: bytes, quantized: dict[str, QuantizedMatrix]
) -> np.ndarray:
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
        q = np.frombuffer(blob[:size], dtype=np.int8)
        (multiplier,) = struct.unpack_from("<f", blob, size)
        if name == "Wemb" or len(shape) != 2:
            q = q.reshape(shape)
        else:  # stored transposed: the bytes are the (cols, rows) matrix
            q = np.ascontiguousarray(q.reshape(shape[1], shape[0]).T)
        quantized[name] = QuantizedMatrix(q, float(multiplier))
        return q.astype(np.float32) / np.float32(multiplier)
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


BLOB_ALIGNMENT = 256


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOB_ALIGNMENT)


def write_marian_bin(
    path: str | Path,
    floats: dict[str, np.ndarray],
    quantized: dict[str, QuantizedMatrix],
    quant_mult_a: dict[str, float],
    special: dict[str, str],
) -> None:
    """Write a Marian `.bin` (the inverse of `read_marian_bin`), atomically.

    Args:
        floats: float32 tensors in Marian's layout (biases and LayerNorms (1, n)).
        quantized: int8 matrices in the logical layout; written transposed (Marian's B
            layout) except `Wemb`, each followed by its float32 multiplier.
        quant_mult_a: activation multipliers, written as float32 (1, 1) `<name>_QuantMultA`.
        special: text entries, written NUL-terminated as `special:<name>` (type 0x101).

    Entries are written in name order, as Marian's converter does.
    """
    entries: list[tuple[str, int, tuple[int, ...], bytes]] = []
    for name, array in floats.items():
        array = np.ascontiguousarray(array, dtype="<f4")
        entries.append((name, FLOAT32_TYPE, array.shape, _padded(array.tobytes())))
    for name, matrix in quantized.items():
        q = np.asarray(matrix.q, dtype=np.int8)
        stored = q if name == "Wemb" or q.ndim != 2 else q.T
        blob = np.ascontiguousarray(stored).tobytes() + struct.pack("<f", matrix.multiplier)
        entries.append((name, INT8_ALPHAS_TYPE, q.shape, _padded(blob)))
    for name, value in quant_mult_a.items():
        entries.append((f"{name}_QuantMultA", FLOAT32_TYPE, (1, 1), _padded(struct.pack("<f", value))))
    for name, text in special.items():
        data = text.encode("utf-8") + b"\0"
        entries.append((f"special:{name}", 0x101, (len(data),), data))
    entries.sort(key=lambda e: e[0])
    names = [e[0].encode("utf-8") + b"\0" for e in entries]
    header = struct.pack("<2Q", 1, len(entries))
    header += b"".join(struct.pack("<4Q", len(n), t, len(shape), len(blob)) for n, (_, t, shape, blob) in zip(names, entries))
    header += b"".join(names)
    header += b"".join(struct.pack(f"<{len(shape)}i", *shape) for _, _, shape, _ in entries)
    padding = -(len(header) + 8) % BLOB_ALIGNMENT
    header += struct.pack("<Q", padding) + b"\0" * padding
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(header)
        for *_, blob in entries:
            handle.write(blob)
    os.replace(tmp, path)


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
