"""CUDA 12's cuBLAS and cuDNN from the `gpu` extra's wheels (nvidia-cublas-cu12, nvidia-cudnn-cu12), loaded before
CTranslate2 puts a model on CUDA.

CTranslate2 opens `libcublas.so.12` and cuDNN by name when it first runs on CUDA; the wheels put them in
site-packages, where the loader does not look, and LD_LIBRARY_PATH is read only when a process starts. Loading them
by path first, process-wide, makes those names resolve to them. Where the extra is not installed, nothing is loaded
and the system's CUDA libraries, if any, are used.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

# Dependencies first where known (cuBLAS Lt before cuBLAS); the rest in whatever order loads.
LIBRARY_PATTERNS = (
    "cublas/lib/libcublasLt.so.12",
    "cublas/lib/libcublas.so.12",
    "cudnn/lib/libcudnn_graph.so.9",
    "cudnn/lib/libcudnn*.so.9",
)


def wheel_library_dirs() -> list[Path]:
    """The folders of the `nvidia` namespace package, where the CUDA wheels install; none without them."""
    try:
        import nvidia  # type: ignore[import-not-found]
    except ImportError:
        return []
    return [Path(folder) for folder in nvidia.__path__]


def load_cuda_libraries(roots: list[Path] | None = None) -> list[Path]:
    """Load every cuBLAS and cuDNN library the wheels hold, process-wide; return those loaded.

    A library whose dependency is not loaded yet fails to load; it is tried again after the others, until a round
    loads nothing more (then the first failure is raised)."""
    pending = list(
        dict.fromkeys(
            library
            for root in (wheel_library_dirs() if roots is None else roots)
            for pattern in LIBRARY_PATTERNS
            for library in sorted(root.glob(pattern))
        )
    )
    loaded: list[Path] = []
    while pending:
        failed: list[tuple[Path, OSError]] = []
        for library in pending:
            try:
                ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
                loaded.append(library)
            except OSError as exc:
                failed.append((library, exc))
        if len(failed) == len(pending):
            raise failed[0][1]
        pending = [library for library, _ in failed]
    return loaded
