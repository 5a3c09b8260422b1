"""One registry of linear-time mixers, looked up by name.

Converters (:mod:`cald_brain.convert`) and recipes name a mixer with a string
(``"bimamba2"``, ``"linformer"`` ...) so that a new mixer plugs in with one
decorator and no change to any converter.

Example
-------
>>> import torch
>>> from cald_brain.nnet.registry import build_mixer, available_mixers
>>> "bimamba2" in available_mixers()
True
>>> mixer = build_mixer("mamba2", d_model=32, d_state=8, headdim=8, chunk_size=4)
>>> mixer(torch.randn(2, 10, 32)).shape
torch.Size([2, 10, 32])
"""

_MIXERS = {}


def register_mixer(name):
    """Class decorator that registers a mixer under ``name``.

    A registered class must be constructible from keyword arguments and be
    called as ``mixer(x, lengths=None)``. It may define a classmethod
    ``from_attention(projections, **kwargs)`` to reuse the projections of the
    attention it replaces (see :func:`build_mixer`).

    Arguments
    ---------
    name : str
        Lower-case name the mixer is looked up by.

    Returns
    -------
    decorator : callable
        Registers and returns the class unchanged.

    Example
    -------
    >>> import torch
    >>> @register_mixer("identity_doc_example")
    ... class Identity(torch.nn.Module):
    ...     def __init__(self, d_model):
    ...         super().__init__()
    ...     def forward(self, x, lengths=None):
    ...         return x
    >>> get_mixer("identity_doc_example").__name__
    'Identity'
    """

    def decorator(cls):
        key = name.lower()
        if key in _MIXERS and _MIXERS[key] is not cls:
            raise ValueError(
                f"A mixer named '{key}' is already registered "
                f"({_MIXERS[key].__module__}.{_MIXERS[key].__name__})."
            )
        _MIXERS[key] = cls
        return cls

    return decorator


def available_mixers():
    """Names of all registered mixers, sorted.

    Returns
    -------
    names : list of str

    Example
    -------
    >>> sorted(set(available_mixers()) & {"mamba", "mamba2"})
    ['mamba', 'mamba2']
    """
    return sorted(_MIXERS)


def get_mixer(name):
    """Returns the mixer class registered under ``name``.

    Arguments
    ---------
    name : str
        Mixer name (case-insensitive).

    Returns
    -------
    cls : type

    Example
    -------
    >>> get_mixer("BiMamba2").__name__
    'BiMamba2'
    """
    if not isinstance(name, str):
        raise TypeError(f"Mixer name must be a string, got {type(name).__name__}.")
    key = name.lower()
    if key not in _MIXERS:
        raise KeyError(
            f"Unknown mixer '{name}'. Registered mixers: "
            f"{', '.join(available_mixers())}."
        )
    return _MIXERS[key]


def build_mixer(name, projections=None, **kwargs):
    """Builds the mixer ``name`` from keyword arguments.

    Arguments
    ---------
    name : str
        Registered mixer name.
    projections : dict, optional
        The ``nn.Linear`` projections of the attention being replaced, keyed
        ``"q"``, ``"k"``, ``"v"``, ``"o"``. Mixers that define
        ``from_attention`` reuse them; the others ignore them.
    **kwargs
        Constructor arguments of the mixer.

    Returns
    -------
    mixer : torch.nn.Module

    Example
    -------
    >>> m = build_mixer("bimamba2", d_model=16, d_state=4, headdim=4, expand=1)
    >>> type(m).__name__
    'BiMamba2'
    """
    cls = get_mixer(name)
    if projections is not None and hasattr(cls, "from_attention"):
        return cls.from_attention(projections, **kwargs)
    return cls(**kwargs)
