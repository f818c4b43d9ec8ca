"""Stage 4: where a model looks: attention maps, Grad-CAM and heatmap overlays."""
