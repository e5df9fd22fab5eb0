"""mixproc common layer."""
