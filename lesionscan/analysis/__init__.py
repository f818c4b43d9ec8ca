"""Stage 3: from predictions to numbers: metrics, resampling statistics, the report's claims, mask agreement."""
