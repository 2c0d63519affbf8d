"""podflow's stages: pure, typed functions for the domain work, each with a thin Prefect task around it."""
