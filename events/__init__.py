"""The contract and the log: what happened, and how it travels."""
