"""The transcribe stage (stage.py) and the transcribers it chooses from (tasks/transcribers.py). Only stage.py
imports Prefect: a cluster worker (cluster.py) loads the transcribers without it."""
