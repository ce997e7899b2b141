"""The compiled per-step loops of the GRU and LSTM kernels (``_fused.cpp``), built on first use.

Each step of a GRU or LSTM kernel does its elementwise work (gate nonlinearities, the state
update and their derivatives) in one compiled loop instead of about ten torch operations. The
C++ source ships with rnnkit; the first call that wants it compiles it with
:func:`torch.utils.cpp_extension.load` (which needs a C++ compiler and ``ninja``, and holds a
file lock, so concurrent processes build it once) into a cache folder:
``$RNNKIT_EXTENSIONS_DIR``, else ``$XDG_CACHE_HOME/rnnkit/extensions``, else
``~/.cache/rnnkit/extensions``. Later processes only load it. It includes no torch header, so
the build takes seconds, not minutes.

Where it cannot be built (no compiler, no ``ninja``, a failed build, or the environment
variable ``RNNKIT_FUSED=0``), the kernels run their per-step work as torch operations, with the
same results, more slowly; a failed build logs one warning, and :func:`unavailable_reason`
says why.

Where torch's CPU library exports the Fortran BLAS ``sgemm_``/``dgemm_`` (its MKL builds do),
and a probe product through it is right, the loops also run a layer direction's whole
recurrence in one call (:attr:`Steps.sequence`), the batch's rows split between the threads
of one OpenMP region; elsewhere the kernels call the per-step loops from Python.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "LOADER",
    "Loader",
    "Steps",
    "TurnedOffError",
    "build",
    "cache_folder",
    "steps",
    "unavailable_reason",
]

SOURCE = Path(__file__).with_name("_fused.cpp")
"""The C++ source of the loops."""

_NAME = "rnnkit_fused"
_POINTER = ctypes.c_void_p
_SIZE = ctypes.c_int64
_FLAG = ctypes.c_int32
_SIGNATURES: dict[str, list[type[ctypes._CData]]] = {
    "gru_forward": [_POINTER] * 7 + [_SIZE] * 2,
    "gru_backward": [_POINTER, _POINTER, _SIZE, _POINTER, _FLAG] + [_POINTER] * 4 + [_SIZE] * 2,
    "lstm_forward": [_POINTER] * 6 + [_SIZE] * 2,
    "lstm_backward": [_POINTER, _POINTER, _SIZE] + [_POINTER] * 5 + [_SIZE] * 2,
    "gru_forward_seq": [_POINTER] * 9 + [_SIZE] * 3 + [_FLAG] * 3,
    "gru_backward_seq": [_POINTER] * 3 + [_SIZE] * 2 + [_POINTER] * 7 + [_SIZE] * 3 + [_FLAG] * 2,
    "lstm_forward_seq": [_POINTER] * 9 + [_SIZE] * 4 + [_FLAG] * 3,
    "lstm_backward_seq": [_POINTER] * 3 + [_SIZE] * 2 + [_POINTER] * 7 + [_SIZE] * 3 + [_FLAG] * 2,
}
_GEMMS = {torch.float32: "sgemm_", torch.float64: "dgemm_"}
_SUFFIXES = {torch.float32: "f32", torch.float64: "f64"}
_log = logging.getLogger("rnnkit.kernels")


@dataclass(frozen=True)
class Steps:
    """The compiled loops for one dtype; each takes data pointers, then ``N`` and ``H``.

    The ``*_seq`` functions run a whole recurrence and take :attr:`gemm` first; they may be
    called only where :attr:`sequence` is true.
    """

    gru_forward: Callable[..., None]
    gru_backward: Callable[..., None]
    lstm_forward: Callable[..., None]
    lstm_backward: Callable[..., None]
    gru_forward_seq: Callable[..., None]
    gru_backward_seq: Callable[..., None]
    lstm_forward_seq: Callable[..., None]
    lstm_backward_seq: Callable[..., None]
    gemm: int | None = None
    """The address of the BLAS ``gemm`` for this dtype, or ``None`` where there is none."""

    @property
    def sequence(self) -> bool:
        """Whether the ``*_seq`` functions can run (a BLAS ``gemm`` was found)."""
        return self.gemm is not None


class TurnedOffError(RuntimeError):
    """The environment variable ``RNNKIT_FUSED=0`` turns the compiled loops off."""


def cache_folder() -> Path:
    """Where compiled libraries are kept (each build in a subfolder per torch version and CPU)."""
    root = os.environ.get("RNNKIT_EXTENSIONS_DIR")
    if root:
        return Path(root)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "rnnkit" / "extensions"


def build() -> str:
    """Compile the library (``ninja`` skips an up-to-date build); return its path.

    Where the compiler refuses OpenMP (say, clang without libomp), the library is built
    without it, under another name (torch renames a second build of one name with other flags
    in the same process); its ``*_seq`` loops then run on one thread. A library built before
    from this source, with either set of flags, is loaded without a compiler.

    Raises:
        TurnedOffError: ``RNNKIT_FUSED=0`` is set.
        Exception: Whatever the first build raises (no compiler, no ``ninja``, a compile error).
    """
    if os.environ.get("RNNKIT_FUSED", "1") == "0":
        raise TurnedOffError("the environment variable RNNKIT_FUSED=0 turns it off")
    folder = cache_folder() / f"{_NAME}-torch{torch.__version__}-{_cpu_tag()}"
    variants = _variants()
    for name, flags in variants:
        if _built(folder, name, flags):
            return str(folder / f"{name}.so")  # no compiler needed to load it
    cpp_extension = _import_quietly()
    folder.mkdir(parents=True, exist_ok=True)
    failure: Exception | None = None
    for name, flags in variants:
        try:
            with _NinjaOnPath():
                cpp_extension.load(
                    name,
                    [str(SOURCE)],
                    extra_cflags=flags,
                    extra_ldflags=[flag for flag in flags if flag == "-fopenmp"],
                    build_directory=str(folder),
                    is_python_module=False,
                )
        except Exception as error:  # the next variant may build; else the first error says why
            failure = failure or error
            continue
        _stamp(folder, name).write_text(_digest(flags))
        return str(folder / f"{name}.so")
    assert failure is not None
    raise failure


def _variants() -> list[tuple[str, list[str]]]:
    """``(library name, compiler flags)`` to try in order: with OpenMP where used, then without."""
    flags = _flags()
    if "-fopenmp" not in flags:
        return [(_NAME, flags)]
    return [(_NAME, flags), (f"{_NAME}_serial", [flag for flag in flags if flag != "-fopenmp"])]


def _built(folder: Path, name: str, flags: list[str]) -> bool:
    """Whether library ``name`` in ``folder`` was built from this source with ``flags``."""
    stamp = _stamp(folder, name)
    return (
        (folder / f"{name}.so").exists() and stamp.is_file() and stamp.read_text() == _digest(flags)
    )


def _stamp(folder: Path, name: str) -> Path:
    """The file recording which source and flags built library ``name``."""
    return folder / ("source.sha256" if name == _NAME else f"{name}.sha256")


def _digest(flags: list[str]) -> str:
    return hashlib.sha256(SOURCE.read_bytes() + " ".join(flags).encode()).hexdigest()


def _import_quietly() -> Any:
    """Import :mod:`torch.utils.cpp_extension` without its note on a missing CUDA runtime."""
    torch_logger = logging.getLogger("torch.utils.cpp_extension")
    level = torch_logger.level
    torch_logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        torch_logger.setLevel(level)
    return cpp_extension


def _cpu_tag() -> str:
    """A short hash of this CPU's model and features: a build targets the CPU it runs on."""
    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            keys = ("model name", "flags", "Features")
            text += "".join(line for line in handle if line.startswith(keys))
    except OSError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _flags() -> list[str]:
    """Optimise and vectorise the loops (on x86-64 with this CPU's vector width).

    On Linux also OpenMP, whose runtime (libgomp) torch's wheels already load; elsewhere the
    ``*_seq`` functions run on one thread.
    """
    flags = ["-O3", "-fno-math-errno", "-fno-trapping-math"]  # lets the loops vectorise
    if platform.machine().lower() in ("x86_64", "amd64"):
        flags.append("-march=native")
    if platform.system() == "Linux":
        flags.append("-fopenmp")
    return flags


class _NinjaOnPath:
    """Put a ``ninja`` that ``pip install ninja`` left beside Python on ``PATH`` for a build.

    A virtual environment's ``bin`` folder is on ``PATH`` only while it is activated.
    """

    def __enter__(self) -> None:
        self.saved = os.environ.get("PATH")
        beside = Path(sys.executable).parent
        if shutil.which("ninja") is None and (beside / "ninja").exists():
            os.environ["PATH"] = os.pathsep.join([str(beside), self.saved or ""])

    def __exit__(self, *exc: object) -> None:
        if self.saved is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = self.saved


class Loader:
    """Builds the library once per process and remembers the loops or why there are none.

    Args:
        builder: Returns the compiled library's path (:func:`build`); anything it raises is
            remembered as the reason the loops are unavailable.
    """

    def __init__(self, builder: Callable[[], str] = build) -> None:
        self.builder = builder
        self.tried = False
        self.reason: str | None = None
        self.loops: dict[torch.dtype, Steps] = {}

    def steps(self, dtype: torch.dtype) -> Steps | None:
        """The loops for ``dtype`` (float32 or float64), or ``None`` where they are unavailable."""
        if not self.tried:
            self.tried = True
            try:
                self.loops = _bind(ctypes.CDLL(self.builder()))
            except Exception as error:  # any failure means: run torch operations instead
                self.reason = _first_line(error)
                if not isinstance(error, TurnedOffError):
                    _log.warning(
                        "rnnkit's compiled GRU/LSTM step could not be built (%s); the kernels "
                        "run their steps as torch operations, with the same results, more slowly",
                        self.reason,
                    )
        return self.loops.get(dtype)


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _bind(library: ctypes.CDLL) -> dict[torch.dtype, Steps]:
    """The library's functions, typed, per dtype."""
    loops: dict[torch.dtype, Steps] = {}
    for dtype, suffix in _SUFFIXES.items():
        functions = {}
        for name, argtypes in _SIGNATURES.items():
            function = getattr(library, f"rnnkit_{name}_{suffix}")
            function.argtypes = argtypes
            function.restype = None
            functions[name] = function
        loops[dtype] = Steps(**functions, gemm=blas_gemm(dtype))
    return loops


def blas_gemm(dtype: torch.dtype) -> int | None:
    """The address of the Fortran BLAS ``gemm`` for ``dtype`` in torch's CPU library, or ``None``.

    Only one that computes a small probe product right is returned: the ``*_seq`` loops call
    it with 32-bit integers, as MKL's and OpenBLAS's default interfaces take them.
    """
    for path in sorted((Path(torch.__file__).parent / "lib").glob("libtorch_cpu.*")):
        try:
            address = ctypes.cast(getattr(ctypes.CDLL(str(path)), _GEMMS[dtype]), _POINTER).value
        except (OSError, AttributeError):
            continue
        if address is not None and _computes_right(address, dtype):
            return int(address)
    return None


def _computes_right(address: int, dtype: torch.dtype) -> bool:
    """Whether the ``gemm`` at ``address`` gives ``a @ b`` for a (3, 2) and a (2, 4) matrix."""
    real = ctypes.c_float if dtype == torch.float32 else ctypes.c_double
    char, integer = ctypes.POINTER(ctypes.c_char), ctypes.POINTER(ctypes.c_int32)
    scalar = ctypes.POINTER(real)
    gemm = ctypes.CFUNCTYPE(
        None,
        char,
        char,
        integer,
        integer,
        integer,
        scalar,
        _POINTER,
        integer,
        _POINTER,
        integer,
        scalar,
        _POINTER,
        integer,
    )(address)
    a = torch.arange(6, dtype=dtype).reshape(3, 2)
    b = torch.arange(8, dtype=dtype).reshape(2, 4) - 3
    c = torch.full((3, 4), float("nan"), dtype=dtype)
    n = ctypes.c_char(b"N")

    def ref(v: int) -> Any:
        return ctypes.byref(ctypes.c_int32(v))

    one, zero = real(1), real(0)
    # row-major C = A B is column-major C^T = B^T A^T: m = 4, n = 3, k = 2
    gemm(
        ctypes.byref(n),
        ctypes.byref(n),
        ref(4),
        ref(3),
        ref(2),
        ctypes.byref(one),
        b.data_ptr(),
        ref(4),
        a.data_ptr(),
        ref(2),
        ctypes.byref(zero),
        c.data_ptr(),
        ref(4),
    )
    return bool(torch.equal(c, a @ b))


LOADER = Loader()
"""The process's loader (tests replace it to refuse the build)."""


def steps(dtype: torch.dtype) -> Steps | None:
    """The compiled loops for ``dtype``, built on the first call; ``None`` where unavailable."""
    return LOADER.steps(dtype)


def unavailable_reason() -> str | None:
    """Why the compiled loops are unavailable (once a build was tried), or ``None``."""
    return LOADER.reason
