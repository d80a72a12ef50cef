"""Signal processing: resampling, segmentation, normalisation."""
