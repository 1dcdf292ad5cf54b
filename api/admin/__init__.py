"""For operators: health, runtime status and the access log."""
