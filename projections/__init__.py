"""Stream processors and read models: what each event means for each read model."""
