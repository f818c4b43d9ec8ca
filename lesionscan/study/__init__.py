"""The study around the stages: the run folder, its declared results, the chapters' helpers, the runner, the pages."""
