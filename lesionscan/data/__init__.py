"""Stage 1: datasets on disk (HAM10000 layouts, the synthetic set, the download) and their splits."""
