"""podflow's Prefect flows, their stage wiring and the `podflow` command line."""
