"""Generators are found by name, the timm `register_model` way:

    @register_generator("cutpaste")
    class CutPaste(Generator): ...

    gen = create_generator("cutpaste", seed=0)
"""

from __future__ import annotations

from collections.abc import Callable

from defectsynth.errors import DefectsynthError

_REGISTRY: dict[str, type] = {}


def register_generator(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"generator {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return wrap


def _import_builtin() -> None:
    # Importing the package's generator modules runs their @register_generator decorators.
    import importlib
    import pkgutil

    import defectsynth.synth as pkg
    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name not in ("registry", "base"):
            importlib.import_module(f"defectsynth.synth.{mod.name}")


def list_generators() -> list[str]:
    _import_builtin()
    return sorted(_REGISTRY)


def create_generator(name: str, **kwargs):
    if name not in _REGISTRY:
        # the module named after the generator first: the light ones need not wait for torch to import
        import importlib.util

        if importlib.util.find_spec(f"defectsynth.synth.{name}") is not None:
            importlib.import_module(f"defectsynth.synth.{name}")
    if name not in _REGISTRY:
        _import_builtin()
    if name not in _REGISTRY:
        raise DefectsynthError(f"--method {name!r} is unknown; use one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)
