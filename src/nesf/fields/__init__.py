"""Structure fields: frames, exact periodic geometry, exact (ground-truth) fields."""
