"""``prefect``, served by statecore: Prefect 1 flows run unchanged (statecore-prefect1-shim).

Importing this package installs statecore's Prefect 1 compatibility layer
(``statecore.compat``) and becomes the layer's ``prefect`` module: the same names
(``task``, ``Flow``, ``Parameter``, ``context``, ...), and every submodule
(``prefect.engine.state``, ``prefect.client``, ...) is served by the layer's import hook.
"""

import sys

# marked first: install() drops any ``prefect`` module that is not the layer's
globals()["__statecore_compat__"] = True

from statecore.compat import install as _install  # noqa: E402
from statecore.compat.finder import populate as _populate  # noqa: E402

_install()
_populate(sys.modules[__name__], "prefect")
