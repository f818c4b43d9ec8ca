"""Stage 2: from images to a trained network: the input pipeline, the layers, the networks, training."""
