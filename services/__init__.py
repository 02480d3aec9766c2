"""What runs: ingest, query, the projector processes, the CLI and the embedded dev stack."""
