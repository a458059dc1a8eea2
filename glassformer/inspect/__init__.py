"""Seeing inside a model: parameter counts, and (later) shapes, attention maps and plots."""
