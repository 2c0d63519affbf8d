"""podflow's stages: pure, typed functions for the domain work, each with a thin Prefect task around it."""

import ctypes
import os

# OpenMP workers spin while they wait for work by default. On the 2-vCPU machines podflow is measured on, that made
# openai-whisper with 2 torch threads 13x slower than with passive workers (46 s against 3.5 s for a 14 s clip).
# OpenMP reads this once, when torch is first imported; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _return_large_blocks_to_the_system() -> None:
    """glibc serves blocks over its mmap threshold with mmap and gives them back when they are freed, but it raises
    that threshold (up to 32 MB) each time such a block is freed, so the encoder's and the VAD's next big blocks come
    from the heap and stay in the process after use. A fixed 4 MB threshold cut the transcribe stage's peak RSS on a
    10-minute episode from 838 to 660 MiB at the same speed (1 MB: 642 MiB but 14% slower; 128 KB: 35% slower)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: its own allocator, its own policy
        return
    libc.mallopt(M_MMAP_THRESHOLD, 4 * 2**20)


M_MMAP_THRESHOLD = -3  # malloc.h
_return_large_blocks_to_the_system()
