"""Entry point of a worker process started by offload.run_in_subprocess: one call in, one result out."""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from typing import Any


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def _progress(percent: float, message: str = "") -> None:
    _emit({"progress": percent, "message": message})


def main() -> int:
    request = json.loads(sys.stdin.buffer.read())
    module_name, _, func_name = request["target"].partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        kwargs = dict(request.get("kwargs") or {})
        if request.get("progress"):
            kwargs["progress"] = _progress
        result = func(*request.get("args", []), **kwargs)
    except Exception as exc:
        from backend.errors import AppError

        err: dict[str, Any] = {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": traceback.format_exc(),
        }
        if isinstance(exc, AppError):
            err.update({"class": type(exc).__name__, "code": exc.code, "message": exc.message})
            # AppError subclasses defined outside backend.errors map to their nearest base there.
            import backend.errors as errors_module

            for base in type(exc).__mro__:
                if getattr(errors_module, base.__name__, None) is base:
                    err["class"] = base.__name__
                    break
        _emit({"error": err})
        return 1
    _emit({"result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
