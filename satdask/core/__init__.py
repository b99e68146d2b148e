"""The pure core: tile geometry, features, the models' math, health and HTML views.

Nothing here does I/O or imports rasterio, xarray, zarr or dask, so every piece
can be tested with numpy arrays alone.
"""
