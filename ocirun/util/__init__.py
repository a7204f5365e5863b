"""Helpers every layer may use: files, locks, output formatting, the store's location.

The layers import downwards only: cli -> run -> layers/registry -> engine. These
modules sit below all of them (beside ocirun.errors): they import nothing of the
project but ocirun.errors, so any layer, the engine included, may import them.
"""
