"""The paper's reconstruction metrics and the StructureMatcher match rate."""
