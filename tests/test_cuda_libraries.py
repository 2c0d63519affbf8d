"""CUDA libraries from the gpu extra's wheels, loaded by path so that CTranslate2's dlopen by name finds them.

No CUDA wheel is installed here (they are GBs, for a GPU): two shared libraries built with gcc, laid out as the
wheels lay theirs out, one needing the other by name, stand in for cuBLAS Lt and cuBLAS."""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.transcribe.cuda_libraries import load_cuda_libraries


def shared_library(path: Path, source: str, *links: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    c = path.with_suffix(".c")
    c.write_text(source)
    command = ["gcc", "-shared", "-fPIC", f"-Wl,-soname,{path.name}", "-o", str(path), str(c), *links]
    subprocess.run(command, check=True)


@pytest.mark.skipif(shutil.which("gcc") is None or sys.platform != "linux", reason="needs gcc on Linux")
@pytest.mark.skipif(ctypes.util.find_library("cublas") is not None, reason="a system cuBLAS would answer the name")
def test_the_wheels_libraries_are_found_by_name_once_loaded(tmp_path: Path) -> None:
    lib = tmp_path / "nvidia" / "cublas" / "lib"
    shared_library(lib / "libcublasLt.so.12", "int lt_answer(void) { return 41; }")
    # libcublas needs libcublasLt by its name, as the real ones do: it loads only once that name resolves.
    shared_library(
        lib / "libcublas.so.12",
        "int lt_answer(void); int podflow_cublas_answer(void) { return lt_answer() + 1; }",
        f"-L{lib}",
        "-l:libcublasLt.so.12",
    )
    with pytest.raises(OSError):
        ctypes.CDLL("libcublas.so.12")  # by name alone: not on the loader's path

    loaded = load_cuda_libraries([tmp_path / "nvidia"])

    assert [path.name for path in loaded] == ["libcublasLt.so.12", "libcublas.so.12"]
    assert ctypes.CDLL("libcublas.so.12").podflow_cublas_answer() == 42  # what CTranslate2's dlopen now gets


def test_nothing_is_loaded_without_the_wheels(tmp_path: Path) -> None:
    assert load_cuda_libraries([tmp_path]) == []
