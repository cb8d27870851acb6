"""training.attention_backend resolves per device and switches torch's SDPA kernels."""

from __future__ import annotations

import pytest

from pipelines.attention import attention_context, describe_attention_backend, resolve_attention_backend
from pipelines.errors import InputError

torch = pytest.importorskip("torch")


def test_auto_is_flash_or_efficient_on_cuda_and_untouched_elsewhere() -> None:
    assert resolve_attention_backend("auto", "cuda") == ("FLASH_ATTENTION", "EFFICIENT_ATTENTION")
    assert resolve_attention_backend("auto", "cuda:1") == ("FLASH_ATTENTION", "EFFICIENT_ATTENTION")
    assert resolve_attention_backend("auto", "cpu") == ()
    assert resolve_attention_backend("auto", "mps") == ()
    assert describe_attention_backend("auto", "cuda") == "flash+efficient"
    assert describe_attention_backend("auto", "cpu") == "torch-default"
    assert resolve_attention_backend("default", "cuda") == ()  # torch's own choice, as the library


@pytest.mark.parametrize(
    ("backend", "kernel"),
    [
        ("cudnn", "CUDNN_ATTENTION"),
        ("efficient", "EFFICIENT_ATTENTION"),
        ("flash", "FLASH_ATTENTION"),
        ("math", "MATH"),
    ],
)
def test_named_backends_on_cuda(backend: str, kernel: str) -> None:
    assert resolve_attention_backend(backend, "cuda") == (kernel,)


@pytest.mark.parametrize("backend", ["cudnn", "efficient", "flash"])
def test_cuda_only_kernels_are_refused_on_cpu(backend: str) -> None:
    with pytest.raises(InputError, match=f"attention_backend={backend} needs a CUDA device"):
        resolve_attention_backend(backend, "cpu")


def test_unknown_backend_is_an_input_error() -> None:
    with pytest.raises(InputError, match="choose from auto, cudnn, efficient, flash, math, default"):
        resolve_attention_backend("fastest", "cuda")


def test_config_accepts_only_the_known_backends() -> None:
    from pipelines.config import ConfigError, load_config

    assert load_config("smoke").training.attention_backend == "auto"
    assert load_config("smoke", sets=["training.attention_backend=math"]).training.attention_backend == "math"
    assert load_config("smoke").flat()["training.attention_backend"] == "auto"  # an MLflow param
    with pytest.raises(ConfigError, match=r"training\.attention_backend"):
        load_config("smoke", sets=["training.attention_backend=fastest"])


def test_context_sets_torch_switches_and_restores_them() -> None:
    before = (
        torch.backends.cuda.flash_sdp_enabled(),
        torch.backends.cuda.mem_efficient_sdp_enabled(),
        torch.backends.cuda.math_sdp_enabled(),
    )
    with attention_context("math", "cpu") as kernels:
        assert kernels == ("MATH",)
        assert torch.backends.cuda.math_sdp_enabled()
        assert not torch.backends.cuda.flash_sdp_enabled()
        assert not torch.backends.cuda.mem_efficient_sdp_enabled()
        q = torch.randn(2, 2, 5, 8)
        out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
        assert out.shape == q.shape
    after = (
        torch.backends.cuda.flash_sdp_enabled(),
        torch.backends.cuda.mem_efficient_sdp_enabled(),
        torch.backends.cuda.math_sdp_enabled(),
    )
    assert after == before
    with attention_context("auto", "cpu") as kernels:  # nothing touched on CPU
        assert kernels == ()
        assert torch.backends.cuda.flash_sdp_enabled() == before[0]
