"""A volume cut into blocks: each block's core (what it writes) and its core plus a halo (what
it reads and computes on), and the faces between neighbouring cores.

Cores tile the volume without overlap on a regular grid, so a zarr array chunked by the core
shape gives every chunk to exactly one block: concurrent block writers never touch the same
chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

from emseg_lib.errors import EmsegInputError

#: ``(z, y, x)`` voxel ranges
Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class Block:
    """One block of a :class:`BlockGrid`.

    Attributes:
        index: its number, in z-major order of the grid.
        position: its place on the grid ``(iz, iy, ix)``.
        core: the voxels it writes ``(z, y, x)`` ranges.
        outer: the core with its halo, clipped to the volume.
    """

    index: int
    position: tuple[int, int, int]
    core: Box
    outer: Box

    @property
    def core_in_outer(self) -> Box:
        """The core as ranges of an array holding :attr:`outer`."""
        return tuple(slice(c.start - o.start, c.stop - o.start)
                     for c, o in zip(self.core, self.outer, strict=True))

    @property
    def core_shape(self) -> tuple[int, int, int]:
        """The core's ``(z, y, x)`` size in voxels."""
        return tuple(s.stop - s.start for s in self.core)


@dataclass(frozen=True)
class Face:
    """The face between two neighbouring blocks along ``axis``. Both blocks computed the
    voxels within half a halo (at least 1 voxel) of it on either side: ``above`` is that
    slab in the upper block's core (the lower block saw it in its halo), ``below`` the slab
    in the lower block's core (seen by the upper one)."""

    lower: int
    upper: int
    axis: int
    above: Box
    below: Box


@dataclass(frozen=True)
class BlockGrid:
    """Blocks of ``block`` voxels (``(z, y, x)``, the last ones smaller) over a ``shape``
    volume, each computed with ``halo`` voxels of context on every side."""

    shape: tuple[int, int, int]
    block: tuple[int, int, int]
    halo: tuple[int, int, int]

    def __post_init__(self) -> None:
        check_blocking(self.shape, self.block, self.halo)

    @property
    def counts(self) -> tuple[int, int, int]:
        """Blocks along ``(z, y, x)``."""
        return tuple(-(-n // b) for n, b in zip(self.shape, self.block, strict=True))

    def __len__(self) -> int:
        counts = self.counts
        return counts[0] * counts[1] * counts[2]

    def block_at(self, index: int) -> Block:
        """Block number ``index``."""
        counts = self.counts
        position = (index // (counts[1] * counts[2]), index // counts[2] % counts[1],
                    index % counts[2])
        core = tuple(slice(p * b, min(n, (p + 1) * b))
                     for p, b, n in zip(position, self.block, self.shape, strict=True))
        outer = tuple(slice(max(0, c.start - h), min(n, c.stop + h))
                      for c, h, n in zip(core, self.halo, self.shape, strict=True))
        return Block(index, position, core, outer)

    def blocks(self) -> list[Block]:
        """Every block, by index."""
        return [self.block_at(i) for i in range(len(self))]

    def index_of(self, position: tuple[int, int, int]) -> int:
        """The index of the block at grid ``position``."""
        counts = self.counts
        return (position[0] * counts[1] + position[1]) * counts[2] + position[2]

    def _face(self, lower: Block, axis: int) -> Face | None:
        """The face of ``lower`` with its upper neighbour along ``axis``; None where it has
        none or the halo along ``axis`` is 0."""
        position = list(lower.position)
        position[axis] += 1
        if position[axis] >= self.counts[axis] or self.halo[axis] == 0:
            return None
        upper = self.block_at(self.index_of(tuple(position)))
        depth = max(1, self.halo[axis] // 2)
        at = upper.core[axis].start
        above, below = list(upper.core), list(lower.core)
        above[axis] = slice(at, min(upper.core[axis].stop, at + depth))
        below[axis] = slice(max(lower.core[axis].start, at - depth), at)
        return Face(lower.index, upper.index, axis, tuple(above), tuple(below))

    def upper_faces(self, block: Block) -> list[Face]:
        """The faces of ``block`` with its upper neighbours (one per axis where it has one and
        the halo is not 0)."""
        return [face for axis in range(3) if (face := self._face(block, axis)) is not None]

    def lower_faces(self, block: Block) -> list[Face]:
        """The faces of ``block`` with its lower neighbours."""
        faces = []
        for axis in range(3):
            position = list(block.position)
            position[axis] -= 1
            if position[axis] >= 0:
                face = self._face(self.block_at(self.index_of(tuple(position))), axis)
                faces += [face] if face is not None else []
        return faces

    def chunks(self) -> tuple[int, int, int]:
        """The zarr chunk shape of the outputs: the block shape (clipped to the volume)."""
        return tuple(min(b, n) for b, n in zip(self.block, self.shape, strict=True))


def check_blocking(shape: tuple[int, ...], block: tuple[int, ...], halo: tuple[int, ...]
                   ) -> None:
    """Refuse blocks that are not 3 positive sizes, halos that are not 3 sizes >= 0, and a
    block smaller than its halo along an axis the volume is cut along (its neighbour's halo
    would reach past the block itself)."""
    if len(block) != 3 or any(b < 1 for b in block):
        raise EmsegInputError(f"blocks must be 3 sizes >= 1 (z, y, x), got {tuple(block)}")
    if len(halo) != 3 or any(h < 0 for h in halo):
        raise EmsegInputError(f"the halo must be 3 sizes >= 0 (z, y, x), got {tuple(halo)}")
    for axis, b, h, n in zip("zyx", block, halo, shape, strict=True):
        if b < n and b < h:
            raise EmsegInputError(f"blocks of {b} voxels along {axis} are smaller than the "
                                  f"halo of {h}; use blocks at least as large as the halo")

