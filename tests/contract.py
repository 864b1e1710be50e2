"""The JSON keys that `check-fields` and `evaluate` promise (the issue's contract, stated once for tests)."""

REPORT_KEYS = (
    "n_structures",
    "atom_count_error_pct",
    "position_error_actual",
    "position_error_detected",
    "species_error_actual_pct",
    "species_error_detected_pct",
    "lattice_length_mae",
    "lattice_angle_mae_deg",
    "match_rate_pct",
    "rmse",
    "seconds",
)
