"""The NeSF autoencoder: encoder, neural-field decoders, lattice heads, configurations."""
