"""napari front end: the dock widget and the sample-data providers."""
