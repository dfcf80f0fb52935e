"""The ``method`` section: a pydantic discriminated union on ``name``, built from the registry.

The config does not import the methods: :mod:`tunelab.methods.registry` (imported by
``tunelab/__init__``) hands its methods over (:func:`tunelab.config.run.use_methods`) when
it loads and whenever a method is registered. Each method gets one variant: ``name`` (its own
literal) plus, when it has settings, a block of the same name (``method: {name: lora, lora:
{r: 16}}``). A block for another method is an error unless it equals that method's defaults;
``cfg.method.<other>`` reads that method's defaults, and a dump writes every block out, so a
resolved config reloads to the same config. Registering a method rebuilds the union.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    SerializationInfo,
    Tag,
    TypeAdapter,
    create_model,
    model_serializer,
    model_validator,
)

from tunelab.config.section import Section

if TYPE_CHECKING:
    from tunelab.methods.base import Method

DEFAULT_METHOD = "lora"
METHODS: dict[str, Method] = {}
"""The registered methods, by name (a copy of the registry's, kept current by it)."""


class MethodConfig(Section):
    """Base of every method variant: ``name`` and the chosen method's settings block."""

    model_config = ConfigDict(defer_build=True)  # built once, inside RunConfig's schema

    name: str

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:
        """Validate ``obj`` as the variant its ``name`` picks (on the base class)."""
        if cls is MethodConfig:
            return method_adapter().validate_python(obj, **kwargs)
        return super().model_validate(obj, **kwargs)

    @model_validator(mode="before")
    @classmethod
    def _other_blocks(cls, data: Any) -> Any:
        """Drop other methods' blocks that equal their defaults; refuse the rest."""
        if not isinstance(data, dict):
            return data
        name = data.get("name", DEFAULT_METHOD)
        others = [k for k in data if k != name and k in METHODS and METHODS[k].settings]
        stray = [k for k in others if not _is_default(METHODS[k], data[k])]
        if stray:
            raise ValueError(
                f"settings block(s) {', '.join(stray)} given but method.name is {name!r}; "
                f"remove them or set method.name: {stray[0]}"
            )
        return {k: v for k, v in data.items() if k not in others}

    @model_serializer(mode="wrap")
    def _all_blocks(self, handler: Any, info: SerializationInfo) -> dict[str, Any]:
        """The dump: name, then every registered method's block (defaults for the others)."""
        own = handler(self)
        out = {"name": own.pop("name")}
        for name, method in METHODS.items():
            if method.settings is not None and name != self.name:
                out[name] = method.settings().model_dump(mode=info.mode)
            elif name in own:
                out[name] = own[name]
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by value: the variant classes are built at run time, not importable."""
        return (restore_method, (self.model_dump(),))

    def __getattr__(self, item: str) -> Any:
        method = METHODS.get(item)
        if method is not None and method.settings is not None:
            return method.settings()
        return super().__getattr__(item)  # type: ignore[misc]

    @property
    def settings(self) -> Section | None:
        """The settings block of the chosen method (None for a method without settings)."""
        return getattr(self, self.name) if self.name in type(self).model_fields else None


def _is_default(method: Method, block: Any) -> bool:
    """True when ``block`` (a raw mapping or settings) equals ``method``'s default settings."""
    try:
        return method.settings.model_validate(block) == method.settings()
    except ValueError:
        return False


_VARIANTS: dict[int, type[MethodConfig]] = {}


def variant(method: Method) -> type[MethodConfig]:
    """The config model of one method (one class per registered method object)."""
    if id(method) not in _VARIANTS:
        _VARIANTS[id(method)] = _make_variant(method)
    return _VARIANTS[id(method)]


def _make_variant(method: Method) -> type[MethodConfig]:
    """A model with the method's ``name`` literal and its settings block."""
    fields: dict[str, Any] = {
        "name": (
            Literal[method.name],
            Field(default=method.name, description=f"{method.name}: {method.describe()}"),
        )
    }
    if method.settings is not None:
        fields[method.name] = (
            method.settings,
            Field(
                default_factory=method.settings, description=f"Settings for name: {method.name}."
            ),
        )
    title = "".join(part.title() for part in method.name.split("_")) + "Method"
    return create_model(title, __base__=MethodConfig, __module__=__name__, **fields)


def _tag(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("name", DEFAULT_METHOD)
    return getattr(value, "name", None)


def method_union() -> Any:
    """The discriminated union of every registered method's variant."""
    variants = tuple(Annotated[variant(m), Tag(m.name)] for m in METHODS.values())
    return Annotated[Union[variants], Discriminator(_tag)]  # noqa: UP007


_ADAPTER: list[TypeAdapter[Any]] = []


def method_adapter() -> TypeAdapter[Any]:
    """A validator for a method section alone (rebuilt when a method is registered)."""
    if not _ADAPTER:
        _ADAPTER.append(TypeAdapter(method_union()))
    return _ADAPTER[0]


def restore_method(data: dict[str, Any]) -> MethodConfig:
    """A method section from its dump (how a pickled one is rebuilt)."""
    return method_adapter().validate_python(data)


def default_method() -> MethodConfig:
    """The method section when the config has none: the default method with its defaults."""
    return method_adapter().validate_python({"name": DEFAULT_METHOD})


def set_methods(methods: dict[str, Method]) -> None:
    """Take the registry's methods; the union and the cached validator are rebuilt from them."""
    METHODS.clear()
    METHODS.update(methods)
    _ADAPTER.clear()
