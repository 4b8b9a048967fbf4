"""Dataset build: clip requests → Parquet shards + dataset.json + failures.parquet."""
