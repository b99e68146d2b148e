"""Views: scenes as lazy, tile-chunked xarray arrays, their tile grids, and validation."""
