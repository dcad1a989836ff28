"""Scores against ground truth: metrics, the evaluation protocols and the one grid-scoring engine,
thresholds learned by score, GAN realism.
"""
