"""podflow's stages: pure, typed functions for the domain work, each with a thin Prefect task around it."""

import os

# OpenMP workers spin while they wait for work by default. On the 2-vCPU machines podflow is measured on, that made
# openai-whisper with 2 torch threads 13x slower than with passive workers (46 s against 3.5 s for a 14 s clip).
# OpenMP reads this once, when torch is first imported; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
