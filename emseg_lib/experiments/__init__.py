"""Experiment drivers the notebooks call: each returns data frames and arrays, never plots."""
