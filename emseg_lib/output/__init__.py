"""Whole volumes to files: `emseg segment` / `emseg postprocess` chunked and resumable, the output
files, partial results, the preview picture.
"""
