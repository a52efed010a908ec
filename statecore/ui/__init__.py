"""``statecore ui``: a local web page over the store, every view a fold of the log.

:mod:`statecore.ui.model` turns replayed views into JSON; :mod:`statecore.ui.server`
serves it with the standard library's ``ThreadingHTTPServer`` and one static page
(``static/``: vanilla JavaScript, CSS and SVG, no build step, no CDN).
"""

from __future__ import annotations

__all__: list[str] = []
