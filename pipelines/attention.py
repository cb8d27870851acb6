"""Which scaled-dot-product-attention kernels training and evaluation encodes may use.

``training.attention_backend``:

* ``auto``: on CUDA, FlashAttention or memory-efficient attention (torch picks per call; padded
  batches carry a mask, which FlashAttention does not take, so they run memory-efficient). cuDNN
  attention is left out: on Hopper with PyTorch >= 2.10 torch prefers it, and it builds a new
  execution plan for every new padded shape (milliseconds of CPU per attention call). Elsewhere
  (CPU, MPS): torch's own choice, unchanged.
* ``cudnn`` | ``efficient`` | ``flash``: only that kernel (CUDA only). ``flash`` fails on padded
  batches (no mask support): use it only for unpadded inputs.
* ``math``: the reference implementation, on any device.
* ``default``: torch's own choice everywhere, untouched (what the library does; the reference run
  of ``bench/train_throughput.py``).

Applied with torch's own switch (``torch.nn.attention.sdpa_kernel``), for the duration of a
``with`` block, so it holds for every SDPA call the model makes inside (the model must run its
attention through SDPA: :data:`ATTN_IMPLEMENTATION`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pipelines.errors import InputError

ATTENTION_BACKENDS: tuple[str, ...] = ("auto", "cudnn", "efficient", "flash", "math", "default")

ATTN_IMPLEMENTATION = "sdpa"
"""The transformers attention implementation the model is loaded with, so the switch above applies."""

_KERNELS: dict[str, tuple[str, ...]] = {
    "cudnn": ("CUDNN_ATTENTION",),
    "efficient": ("EFFICIENT_ATTENTION",),
    "flash": ("FLASH_ATTENTION",),
    "math": ("MATH",),
}
_CUDA_AUTO = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION")
_CUDA_ONLY = ("cudnn", "efficient", "flash")


def resolve_attention_backend(backend: str, device: str) -> tuple[str, ...]:
    """The SDPA kernels ``backend`` allows on ``device`` (``()``: torch's default choice, untouched).

    ``resolve_attention_backend("auto", "cuda") == ("FLASH_ATTENTION", "EFFICIENT_ATTENTION")``;
    ``resolve_attention_backend("auto", "cpu") == ()``. :class:`InputError` for an unknown name or
    a CUDA-only kernel on another device.
    """
    if backend not in ATTENTION_BACKENDS:
        raise InputError(f"attention backend {backend!r}: choose from {', '.join(ATTENTION_BACKENDS)}")
    kind = str(device).split(":", 1)[0]
    if backend == "default":
        return ()
    if backend == "auto":
        return _CUDA_AUTO if kind == "cuda" else ()
    if backend in _CUDA_ONLY and kind != "cuda":
        raise InputError(f"training.attention_backend={backend} needs a CUDA device (device is {kind})")
    return _KERNELS[backend]


def describe_attention_backend(backend: str, device: str) -> str:
    """A short label for results and logs: ``flash+efficient``, ``math``, ``torch-default``."""
    kernels = resolve_attention_backend(backend, device)
    if not kernels:
        return "torch-default"
    return "+".join(k.removesuffix("_ATTENTION").lower() for k in kernels)


@contextlib.contextmanager
def attention_context(backend: str, device: str) -> Iterator[tuple[str, ...]]:
    """Restrict SDPA to ``backend``'s kernels inside the block (torch's switch; restored on exit)."""
    kernels = resolve_attention_backend(backend, device)
    if not kernels:
        yield kernels
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([getattr(SDPBackend, name) for name in kernels]):
        yield kernels


def model_attn_implementation(model: object) -> str | None:
    """The attention implementation of the first transformers model inside a SentenceTransformer."""
    for module in getattr(model, "modules", lambda: [])():
        config = getattr(module, "config", None)
        impl = getattr(config, "_attn_implementation", None)
        if isinstance(impl, str):
            return impl
    return None
