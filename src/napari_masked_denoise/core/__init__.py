"""The pure core: axes and user errors, coordinate-hashed masks, device choice.

Nothing here imports another layer of the package (nor Qt, zarr or dask).
"""
