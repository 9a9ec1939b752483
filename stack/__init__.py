"""The program's top layer, below ``__main__.py``: ``config`` reads the stack's keys once and
``wiring`` maps them onto the components' Args. Nothing below imports it."""
