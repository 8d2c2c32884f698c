"""Starts `python3 -m <module>` in a Kiln image, also when the module is a compiled extension.

runpy cannot run an extension module as __main__ ("No code object available"), and its
`if __name__ == "__main__"` block never runs on import; so a compiled module's `main()` is called.
A module kept as source runs exactly as `python -m` would run it.
"""

import importlib
import importlib.util
import runpy
import sys


def launch() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: kiln_launch.py MODULE [ARGS...]")
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)
    if spec.origin and spec.origin.endswith(".py"):
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return
    entry = getattr(importlib.import_module(module), "main", None)
    if entry is None:
        sys.exit(f"kiln: compiled module {module} has no main() to call")
    sys.exit(entry())


if __name__ == "__main__":
    launch()
