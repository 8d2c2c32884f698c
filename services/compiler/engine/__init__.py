"""Kiln's compile engine: Python packages -> Cython extensions, amd64 and arm64. No bus, no DB."""

from .build import compile_tree, output_dirs
from .cache import ModuleCache, default_cache_dir
from .cc import SUPPORTED_PLATFORMS, ToolchainMissing, host_platform
from .report import CompiledModule, CompiledSet, CompileReport
from .target import TargetPython
from .tree import MARKER_NAME, OutputNotOurs

__all__ = [
    "MARKER_NAME",
    "SUPPORTED_PLATFORMS",
    "CompileReport",
    "CompiledModule",
    "CompiledSet",
    "ModuleCache",
    "OutputNotOurs",
    "TargetPython",
    "ToolchainMissing",
    "compile_tree",
    "default_cache_dir",
    "host_platform",
    "output_dirs",
]
