"""
Runs and what they leave behind.

The single-process run (`experiment`), evaluation, metrics and plots, weight files and
their pieces, predictions from a weights folder, and learning from a stream.
"""
