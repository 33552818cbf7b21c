"""CLIP-InterpreT: exact per-(layer, head, patch) decomposition of the image embedding and its analyses."""
