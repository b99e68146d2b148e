"""I/O: GDAL settings, pixel sources (GeoTIFF/COG and STAC), the run store, the journal,
the model registry, hashing and lineage, and the sample and download helpers."""
