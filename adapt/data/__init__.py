"""Data: sources -> tokenized, cached documents -> token-level mixture -> packed blocks."""
