"""Every operation of Daytona's generated clients, as JSON: run with .venv-daytona/bin/python.

Prints `[{"client", "api", "operation", "method", "path"}, ...]` for the public methods of every `*Api` class of
`daytona_api_client` and `daytona_toolbox_api_client` (the `_with_http_info` / `_without_preload_content`
variants are the same operation). Method and path come from each operation's `_<name>_serialize` source, which
hands them to `param_serialize(method=..., resource_path=...)`.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
import sys

CLIENTS = ("daytona_api_client", "daytona_toolbox_api_client")
_METHOD = re.compile(r"method='(\w+)'")
_PATH = re.compile(r"resource_path='([^']+)'")


def operations(client: str) -> list[dict[str, str]]:
    api_pkg = importlib.import_module(client + ".api")
    out = []
    for mod_info in pkgutil.iter_modules(api_pkg.__path__):
        mod = importlib.import_module(f"{client}.api.{mod_info.name}")
        for cls_name, cls in inspect.getmembers(mod, inspect.isclass):
            if not cls_name.endswith("Api") or cls.__module__ != mod.__name__:
                continue
            for name, _fn in inspect.getmembers(cls, inspect.isfunction):
                if name.startswith("_") or name.endswith(("_with_http_info", "_without_preload_content")):
                    continue
                serialize = getattr(cls, f"_{name}_serialize", None)
                if serialize is None:
                    continue
                src = inspect.getsource(serialize)
                method, path = _METHOD.search(src), _PATH.search(src)
                if method is None or path is None:
                    raise SystemExit(f"{client}.{cls_name}.{name}: no method/path in its _serialize")
                out.append(
                    {"client": client, "api": cls_name, "operation": name, "method": method.group(1),
                     "path": path.group(1)}
                )  # fmt: skip
    return out


def main() -> None:
    ops = [op for client in CLIENTS for op in operations(client)]
    json.dump(ops, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
