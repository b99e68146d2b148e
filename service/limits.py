"""What a file under the data root may claim before the service decodes any of it.

Checked on the TIFF header (`service.tiff.Layout`), before GDAL opens the file:

- its size: at most `max_side` px a side and `max_pixels` px in all (a header of a few
  hundred bytes can claim 200,000,000 px a side);
- its blocks: a strip or tile at most `max_block_bytes` once decompressed (a single
  DEFLATE strip of 1 MB can inflate to 1 GiB, and GDAL inflates all of it above a row it
  is asked for);
- its reads: one tile of the service's grid, or the whole raster for the `tile_path`
  form, decompresses at most `max_read_bytes`, counting every strip or tile it touches
  at the worst offset into them. That bounds the time a read may take, so one scene
  cannot hold a reader thread while other clients wait.

Each refusal is one line naming the file (by the client's path), what it claims, the
limit and the setting that raises it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from satdask.io.source import size_problem
from service.tiff import Layout


@dataclass(frozen=True)
class FileLimits:
    """The service's limits on files (see the `SATDASK_*` settings of the same names)."""

    max_side: int = 131072
    max_pixels: int = 2**32
    max_block_bytes: int = 8 * 1024 * 1024
    max_read_bytes: int = 128 * 1024 * 1024
    hard_links: bool = False

    @classmethod
    def of(cls, settings: Any) -> FileLimits:
        return cls(
            max_side=settings.max_scene_side,
            max_pixels=settings.max_scene_pixels,
            max_block_bytes=settings.max_block_bytes,
            max_read_bytes=settings.max_read_bytes,
            hard_links=settings.allow_hard_links,
        )

    def size(self, name: str, height: int, width: int) -> str | None:
        """Why a claimed size is refused, or None."""
        problem = size_problem(height, width, max_side=self.max_side, max_pixels=self.max_pixels)
        if problem is None:
            return None
        setting = "SATDASK_MAX_SCENE_SIDE" if "a side" in problem else "SATDASK_MAX_SCENE_PIXELS"
        return f"{name}: {problem} ({setting})"

    def layout(self, name: str, layout: Layout, *, tile_size: int) -> str | None:
        """Why a file's header is refused (size, blocks, a tile's read), or None."""
        too_large = self.size(name, layout.height, layout.width)
        if too_large is not None:
            return too_large
        if layout.block_bytes > self.max_block_bytes:
            return (
                f"{name}: {layout.blocks_text(1)} holds {layout.block_bytes} bytes once "
                f"decompressed, over the limit of {self.max_block_bytes} bytes "
                "(SATDASK_MAX_BLOCK_BYTES); rewrite it tiled, e.g. gdal_translate -co TILED=YES"
            )
        blocks = layout.blocks_read(tile_size, tile_size, step=tile_size)
        return self._read(
            name, layout, blocks, f"a {tile_size} px tile", "rewrite it tiled, e.g. "
            "gdal_translate -co TILED=YES"
        )  # fmt: skip

    def whole(self, name: str, layout: Layout) -> str | None:
        """Why reading the whole raster at once (the `tile_path` form) is refused, or None."""
        blocks = layout.blocks_read(layout.height, layout.width)
        return self._read(
            name, layout, blocks, "the whole raster (the tile_path form)",
            "ask for its tiles with scene, row and col",
        )  # fmt: skip

    def _read(self, name: str, layout: Layout, blocks: int, what: str, hint: str) -> str | None:
        total = blocks * layout.block_bytes
        if total <= self.max_read_bytes:
            return None
        return (
            f"{name}: {what} reads {layout.blocks_text(blocks)}, {total} bytes once "
            f"decompressed, over the limit of {self.max_read_bytes} bytes "
            f"(SATDASK_MAX_READ_BYTES); {hint}"
        )
