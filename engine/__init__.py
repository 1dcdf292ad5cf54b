"""Pure ERAS pathway core: pathway model, loader, timing, evaluation and compliance (no I/O, no clock)."""
