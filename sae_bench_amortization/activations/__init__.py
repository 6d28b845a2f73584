"""Activation sources: an activation file, a model reading text (TransformerLens or transformers), or an
in-memory tensor, all streamed in fixed-size chunks with their concept labels."""
