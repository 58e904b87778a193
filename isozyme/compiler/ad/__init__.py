"""Automatic differentiation: derivative-function generators (forward, reverse)."""
