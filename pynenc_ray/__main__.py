"""``python -m pynenc_ray`` is the ``pynenc-ray`` command."""

from .cli import main

raise SystemExit(main())
