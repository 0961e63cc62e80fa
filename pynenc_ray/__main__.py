"""``python -m pynenc_ray`` is the ``pynenc-ray`` command.

Guarded: process runners' children re-import the parent's main module (as
``__mp_main__``), and must not start a runner of their own.
"""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
