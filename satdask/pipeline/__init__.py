"""Pipeline: batch runs, training, monitoring of runs, verification, many-scene runs."""
