"""train

``utod.train`` is both this package and the Python API's training function: calling the
package, ``utod.train(data=..., epochs=...)``, runs :func:`utod.api.train` (the package holds
the trainer; a function of the same name on ``utod`` would be shadowed once it is imported).
"""

from __future__ import annotations

import sys
import types


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from utod.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
