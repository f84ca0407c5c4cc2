"""Plain data (YAML, JSON) -> checked dataclasses: run configs (asr.config) and decoding options
(asr.decoding.DecodingOptions) are read through here. An unknown key at any depth is an error that names
the key and the closest valid one, a value of the wrong type one that names the key: a typo never silently
does nothing. No torch, no training code: the runtime reads decoding.yaml with it."""

import dataclasses
import difflib
import re
import typing

import yaml

from asr.errors import ASRError


def from_plain(cls, values, where: str = ""):
    """A dict -> dataclass `cls`, checked: unknown keys (with the closest valid one) and wrong types raise
    ASRError; sections become their dataclasses. Used for run configs and for decoding options."""
    if not isinstance(values, dict):
        what = where.rstrip(".")
        raise ASRError(f"{what + ': ' if what else ''}expected a section (key: value lines), got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        path = f"{where}{key}"
        if key not in names:
            raise ASRError(f"unknown key {path!r}{closest(key, names, where)}")
        kwargs[key] = _check(hints[key], value, path)
    return cls(**kwargs)


def _check(kind, value, path: str):
    """`value` as the annotation `kind` wants it (a section becomes its dataclass), or ASRError."""
    if dataclasses.is_dataclass(kind):
        return from_plain(kind, value, f"{path}.")
    options = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, _UnionType) else (kind,)
    for option in options:
        if option is type(None) and value is None:
            return None
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option in (int, str, bool, dict) and type(value) is option:
            return value
        if typing.get_origin(option) is list and isinstance(value, list):
            inner = typing.get_args(option)[0]
            return [_check(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
    expected = " or ".join("null" if o is type(None) else getattr(o, "__name__", str(o)) for o in options)
    raise ASRError(f"key {path!r}: expected {expected}, got {value!r}")


_UnionType = type(int | None)  # `X | None` annotations


def closest(key: str, names, where: str = "") -> str:
    """' (did you mean ...?)' for a mistyped key, or the list of valid keys."""
    match = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
    return f" (did you mean '{where}{match[0]}'?)" if match else f" (valid: {', '.join(names)})"


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `3e-4` (no dot) as a string; configs mean a number. Same resolver, wider float."""


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
        r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.inf|\.Inf|\.INF|\.nan|\.NaN|\.NAN)$"
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str):
    """YAML text -> plain data, with `3e-4` read as the number it means."""
    return yaml.load(text, Loader=_Loader)
