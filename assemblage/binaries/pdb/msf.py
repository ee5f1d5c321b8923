"""The MSF container of a PDB: blocks, the stream directory, and streams.

A PDB is a tiny file system (the "Multi-Stream Format"). A 56-byte superblock
gives the block size and where the list of directory blocks lives; the
directory names, for every stream, its size and its blocks. Everything else
(PDB info, DBI, module symbols, IPI) is a stream read through this module.

Only MSF 7.0 ("big MSF", what link.exe since VS2005 and lld write) is read.
Every number that comes from the file is checked before it is used, so a
corrupt or truncated file raises :class:`CorruptPdb` (turned into
:class:`~assemblage.errors.InvalidBinaryError` by :mod:`assemblage.binaries.pdb`)
instead of an ``IndexError`` deep inside, or a giant allocation.

Format reference: https://llvm.org/docs/PDB/MsfFile.html
"""

from __future__ import annotations

import struct

__all__ = ["CorruptPdb", "MsfFile", "MSF_MAGIC", "NIL_STREAM"]

MSF_MAGIC = b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\x00\x00\x00"
_SUPERBLOCK = struct.Struct("<6I")  # BlockSize FreeBlockMapBlock NumBlocks NumDirectoryBytes Unknown BlockMapAddr
_BLOCK_SIZES = frozenset({512, 1024, 2048, 4096, 8192, 16384, 32768})
NIL_STREAM = 0xFFFF  # a stream index meaning "no such stream"
_NIL_SIZE = 0xFFFFFFFF  # a directory size meaning "deleted stream"


class CorruptPdb(ValueError):
    """The file is not a well-formed PDB; the message says what is wrong."""


class MsfFile:
    """The streams of one MSF file held in memory.

    ``MsfFile(data)`` checks the superblock and the directory; ``stream(i)``
    returns the bytes of stream ``i`` (``b""`` for a nil or deleted stream).
    """

    __slots__ = ("_data", "block_size", "num_blocks", "_sizes", "_blocks")

    def __init__(self, data: bytes) -> None:
        if len(data) < len(MSF_MAGIC) + _SUPERBLOCK.size:
            raise CorruptPdb("too small to be a PDB")
        if data[: len(MSF_MAGIC)] != MSF_MAGIC:
            if data.startswith(b"Microsoft C/C++ program database 2.00"):
                raise CorruptPdb("PDB 2.0 (small MSF) files are not supported")
            raise CorruptPdb("not a PDB (no MSF 7.00 magic)")
        self._data = data
        bs, _fpm, nblocks, dir_bytes, _unk, map_addr = _SUPERBLOCK.unpack_from(data, len(MSF_MAGIC))
        if bs not in _BLOCK_SIZES:
            raise CorruptPdb(f"invalid MSF block size {bs}")
        if nblocks * bs > len(data):
            raise CorruptPdb(f"truncated: superblock says {nblocks * bs} bytes, file has {len(data)}")
        self.block_size = bs
        self.num_blocks = nblocks
        if dir_bytes == 0 or dir_bytes > len(data):
            raise CorruptPdb(f"invalid stream directory size {dir_bytes}")
        dir_block_count = -(-dir_bytes // bs)
        if dir_block_count * 4 > bs * 64:  # the block map itself may not span blocks we cannot follow
            raise CorruptPdb("stream directory too large")
        self._check_block(map_addr)
        map_bytes = data[map_addr * bs : map_addr * bs + dir_block_count * 4]
        if len(map_bytes) != dir_block_count * 4:
            raise CorruptPdb("truncated directory block map")
        dir_blocks = struct.unpack(f"<{dir_block_count}I", map_bytes)
        directory = self._gather(dir_blocks, dir_bytes)
        self._parse_directory(directory)

    def _check_block(self, index: int) -> None:
        if index == 0 or index >= self.num_blocks:
            raise CorruptPdb(f"block index {index} outside the file ({self.num_blocks} blocks)")

    def _gather(self, blocks: tuple[int, ...] | list[int], size: int) -> bytes:
        bs = self.block_size
        data = self._data
        for b in blocks:
            if b == 0 or b >= self.num_blocks:
                raise CorruptPdb(f"block index {b} outside the file ({self.num_blocks} blocks)")
        if len(blocks) == 1:
            return data[blocks[0] * bs : blocks[0] * bs + size]
        # Consecutive blocks are the common case: join runs, not single blocks.
        parts: list[bytes] = []
        run_start = prev = blocks[0]
        for b in blocks[1:]:
            if b != prev + 1:
                parts.append(data[run_start * bs : (prev + 1) * bs])
                run_start = b
            prev = b
        parts.append(data[run_start * bs : (prev + 1) * bs])
        return b"".join(parts)[:size]

    def _parse_directory(self, d: bytes) -> None:
        if len(d) < 4:
            raise CorruptPdb("truncated stream directory")
        (count,) = struct.unpack_from("<I", d, 0)
        if count > (len(d) - 4) // 4:
            raise CorruptPdb(f"stream directory claims {count} streams in {len(d)} bytes")
        sizes = list(struct.unpack_from(f"<{count}I", d, 4))
        pos = 4 + 4 * count
        bs = self.block_size
        blocks: list[tuple[int, ...]] = []
        total = 0
        for i, size in enumerate(sizes):
            if size == _NIL_SIZE:
                sizes[i] = 0
                blocks.append(())
                continue
            n = -(-size // bs)
            total += n
            if total > self.num_blocks or pos + 4 * n > len(d):
                raise CorruptPdb(f"stream {i} ({size} bytes) does not fit the file")
            blocks.append(struct.unpack_from(f"<{n}I", d, pos))
            pos += 4 * n
        self._sizes = sizes
        self._blocks = blocks

    @property
    def stream_count(self) -> int:
        return len(self._sizes)

    def has_stream(self, index: int) -> bool:
        return 0 <= index < len(self._sizes) and index != NIL_STREAM and self._sizes[index] > 0

    def stream(self, index: int) -> bytes:
        """The bytes of stream ``index``; ``b""`` for the nil index or an empty stream."""
        if index == NIL_STREAM:
            return b""
        if not 0 <= index < len(self._sizes):
            raise CorruptPdb(f"stream {index} referenced but the directory has {len(self._sizes)}")
        size = self._sizes[index]
        if size == 0:
            return b""
        out = self._gather(self._blocks[index], size)
        if len(out) != size:
            raise CorruptPdb(f"stream {index} is truncated")
        return out
