"""Figures, tables and the thesis's published numbers for the notebooks.
"""
