"""Crystal records, readers, species vocabularies and batching."""
