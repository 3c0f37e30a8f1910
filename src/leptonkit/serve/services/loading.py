"""From ``FILE.py:CLASS`` (or ``package.module:CLASS``) to a checked service class, and back for another process."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from leptonkit.errors import InvalidInputError, LeptonkitError
from leptonkit.serve.services.declare import Service, ServiceSpec, describe


def load_service(spec: str) -> type[Service]:
    """The class ``FILE.py:CLASS`` (or ``package.module:CLASS``) names; one-line errors for a bad spec, a file that
    does not import, or a missing class."""
    source, sep, class_name = spec.rpartition(":")
    if not sep or not source or not class_name:
        raise InvalidInputError(f"--service {spec!r}: expected FILE.py:CLASS", param="service")
    path = Path(source).expanduser()
    try:
        if source.endswith(".py") or path.exists():
            if not path.is_file():
                raise InvalidInputError(f"--service {spec}: no file {source}", param="service")
            module = _import_file(path)
        else:
            module = importlib.import_module(source)
    except LeptonkitError:
        raise
    except BaseException as err:  # the user's module: a SyntaxError or a SystemExit is theirs to fix, not ours
        raise InvalidInputError(
            f"--service {spec}: {source} does not import ({type(err).__name__}: {err})",
            hint="run it with python to see the traceback",
            param="service",
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        found = sorted(
            n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, Service) and v is not Service
        )
        raise InvalidInputError(
            f"--service {spec}: {source} has no class {class_name}",
            hint=f"services there: {', '.join(found) or 'none'}",
            param="service",
        )
    return cls


def _import_file(path: Path) -> Any:
    resolved = path.resolve()
    module_name = f"leptonkit_service_{resolved.stem}_{abs(hash(str(resolved))):x}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module_spec = importlib.util.spec_from_file_location(module_name, resolved)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses and pydantic look their module up while it executes
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def service_spec(service: str | type[Service]) -> ServiceSpec:
    """A ``FILE.py:CLASS`` string or a class, checked (:func:`describe`)."""
    return describe(load_service(service) if isinstance(service, str) else service)


def service_source(cls: type[Service]) -> str:
    """``FILE.py:CLASS`` for a class defined at the top level of a file (how a new process finds it again)."""
    file = inspect.getsourcefile(cls)
    if file is None or "." in cls.__qualname__:
        raise InvalidInputError(
            f"service {cls.__qualname__} must be defined at the top level of a .py file to be served in another "
            "process",
            hint="move the class into a module file",
        )
    return f"{file}:{cls.__name__}"
