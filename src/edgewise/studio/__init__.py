"""Everything with torch: datasets, model zoo, training, tuning, compression, export, benchmarks."""
