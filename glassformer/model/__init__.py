"""Model parts (one idea per module) and the models assembled from them."""
