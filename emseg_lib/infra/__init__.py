"""Infrastructure every stage uses: atomic files and output checks, locks, worker pools, progress,
the hang watchdog, work records, devices, project paths, training sweeps, the checkpoint file
format.
"""
