"""Everything that estimates or simulates noise.

- :mod:`.levels`: robust noise levels of residuals and images, local noise maps.
- :mod:`.holdout`: held-out pixels and the error estimates built on them.
- :mod:`.sure`: Stein's unbiased risk estimate with an intensity-dependent noise level.
- :mod:`.simulate`: noise models for training, samples and benchmarks.
"""
