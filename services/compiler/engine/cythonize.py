"""The architecture-free step: one Python module -> one C file, with directives safe for arbitrary
Python code (annotations are not trusted as C types; functions stay introspectable)."""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import Cython

DIRECTIVES: dict[str, object] = {
    "language_level": 3,
    "binding": True,  # functions behave like Python functions (inspect.signature, __wrapped__ ...)
    "annotation_typing": False,  # `x: int` is a hint in Python, never a C type
    "always_allow_keywords": True,
    "embedsignature": False,
}

_CYTHON_ERROR = re.compile(r"^(?P<file>[^\n:]+):(?P<line>\d+):(?P<col>\d+): (?P<message>.+)$", re.M)


@dataclass(frozen=True)
class CythonFailure:
    line: int | None
    message: str


def cython_fingerprint() -> str:
    """Cython version + directives: part of every C cache key."""
    directives = ",".join(f"{k}={v}" for k, v in sorted(DIRECTIVES.items()))
    return f"cython={Cython.__version__};{directives}"


def generate_c(source: Path, module_name: str, c_file: Path) -> CythonFailure | None:
    """Write the C translation of `source` to `c_file`; on failure return the first error."""
    from Cython.Compiler import Errors
    from Cython.Compiler.Main import CompilationOptions, compile_single, default_options

    options = CompilationOptions(
        default_options,
        compiler_directives=dict(DIRECTIVES),
        language_level=3,
        output_file=str(c_file),
    )
    messages = io.StringIO()
    try:
        with contextlib.redirect_stderr(messages), contextlib.redirect_stdout(messages):
            result = compile_single(str(source), options, module_name)
    except Errors.CompileError as error:
        position = getattr(error, "position", None)
        line = position[1] if position else None
        return CythonFailure(line, f"Cython: {getattr(error, 'message_only', str(error))}")
    except Exception as error:  # Cython's internal errors must not crash the build
        return CythonFailure(None, f"Cython internal error: {type(error).__name__}: {error}")
    if result.num_errors or not c_file.is_file():
        return _first_error(messages.getvalue())
    return None


def _first_error(output: str) -> CythonFailure:
    match = _CYTHON_ERROR.search(output)
    if match:
        return CythonFailure(int(match["line"]), f"Cython: {match['message'].strip()}")
    last_line = output.strip().splitlines()[-1] if output.strip() else "no output"
    return CythonFailure(None, f"Cython failed: {last_line}")
