"""The web monitor (``pynenc-ray monitor``, the ``monitor`` extra): a read-only
view of one app's backend in a browser.

- ``data``: what the pages show, gathered from the backend by plain functions
  (no web framework; unit-tested on the memory backend);
- ``web``: the Starlette app that renders it with Jinja2 templates
  (``templates/``), and the opt-in cancel and retry actions;
- ``cli``: the ``monitor`` subcommand, which serves it with uvicorn.

Only ``web`` and ``cli`` (inside ``cmd_monitor``) import Starlette, Jinja2 or
uvicorn, so the rest of pynenc-ray runs without the extra installed; importing
this package imports none of them.
"""
