"""Loads a Python v2 Functions app and indexes it the way the Python worker does.

The app's `function_app.py` is imported from the app folder, the module-level
`FunctionRegister` (a `df.DFApp` or `func.FunctionApp`) is found, and `get_functions()`
is called exactly once (a second call on the same app object raises). The result is a
list of `IndexedFunction`s: name, trigger type, binding names, route and methods for HTTP
triggers, and the callable to invoke.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func

HTTP_TRIGGER = "httpTrigger"
ORCHESTRATION_TRIGGER = "orchestrationTrigger"
ACTIVITY_TRIGGER = "activityTrigger"
ENTITY_TRIGGER = "entityTrigger"
WARMUP_TRIGGER = "warmupTrigger"
DURABLE_CLIENT = "durableClient"
#: the functions every df.DFApp registers for `call_http`; not the app's, so not listed
BUILTIN_PREFIX = "BuiltIn__"


class AppLoadError(Exception):
    """The app folder has no loadable function_app.py or no functions in it."""


@dataclass(frozen=True)
class IndexedFunction:
    name: str
    trigger_type: str
    trigger_param: str
    user_function: Callable[..., Any]
    #: the durable name: orchestration, activity or entity name (None for other triggers)
    durable_name: str | None = None
    route: str | None = None
    methods: tuple[str, ...] = ()
    auth_level: str | None = None
    client_params: tuple[str, ...] = ()
    extra_params: tuple[str, ...] = ()

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.user_function)

    @property
    def accepts_context(self) -> bool:
        return "context" in inspect.signature(self.user_function).parameters


def _enum_text(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _index_function(function: func.Function) -> IndexedFunction:
    trigger = function.get_trigger()
    if trigger is None:
        raise AppLoadError(f"function {function.get_function_name()!r} has no trigger")
    trigger_type = str(trigger.get_binding_name())
    trigger_dict = trigger.get_dict_repr()
    bindings = function.get_bindings()
    clients = tuple(b.name for b in bindings if b.type == DURABLE_CLIENT)
    name = str(function.get_function_name())
    durable_name: str | None = None
    route = None
    methods: tuple[str, ...] = ()
    auth_level = None
    if trigger_type == HTTP_TRIGGER:
        route = str(trigger_dict.get("route") or name)
        raw_methods = trigger_dict.get("methods") or [
            "GET",
            "POST",
            "PUT",
            "DELETE",
            "PATCH",
            "HEAD",
            "OPTIONS",
        ]
        methods = tuple(str(_enum_text(m)).upper() for m in raw_methods)
        auth_level = _enum_text(trigger_dict.get("authLevel"))
    elif trigger_type == ORCHESTRATION_TRIGGER:
        durable_name = trigger_dict.get("orchestration") or name
    elif trigger_type == ACTIVITY_TRIGGER:
        durable_name = trigger_dict.get("activity") or name
    elif trigger_type == ENTITY_TRIGGER:
        durable_name = trigger_dict.get("entityName") or name
    user_function = function.get_user_function()
    known = {trigger.name, *clients, "context"}
    extra = tuple(p for p in inspect.signature(user_function).parameters if p not in known)
    return IndexedFunction(
        name=name,
        trigger_type=trigger_type,
        trigger_param=trigger.name,
        user_function=user_function,
        durable_name=durable_name,
        route=route,
        methods=methods,
        auth_level=auth_level,
        client_params=clients,
        extra_params=extra,
    )


def load_app(app_dir: Path, module_name: str = "function_app") -> list[IndexedFunction]:
    """Import `<app_dir>/function_app.py` and index its functions (once)."""
    app_dir = app_dir.resolve()
    path = app_dir / f"{module_name}.py"
    if not path.is_file():
        raise AppLoadError(f"{path} not found; pass --app with the folder that holds function_app.py")
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    registers = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if len(registers) != 1:
        raise AppLoadError(f"{path} must define exactly one FunctionApp/DFApp; found {len(registers)}")
    indexed = index_functions(registers[0])
    if not indexed:
        raise AppLoadError(f"{path} defines no functions")
    return indexed


def index_functions(app: func.FunctionRegister) -> list[IndexedFunction]:
    """Index an app object's functions. Call once per app object (the library's rule)."""
    return [_index_function(f) for f in app.get_functions()]
