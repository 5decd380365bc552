"""Reasoning control: how each model family is told whether, and how hard, to think."""
