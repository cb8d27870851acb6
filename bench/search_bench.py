"""``recipe-embed search``: cold start, warm query, and the search backend chosen by measurement.

Three figures, on the bundled catalog (or ``--catalog``):

* ``cold``: one ``recipe-embed search`` process with an empty cache (imports, model load, catalog
  embedded once, index written, one query), wall clock; goal < 10 s on CPU;
* ``warm``: in one process with the index loaded, one query (encode + search + top k), median of
  ``--queries`` queries; goal < 50 ms;
* ``backend``: search alone (no encode) per query, numpy brute force against the library's
  ``semantic_search_faiss`` / ``semantic_search_usearch`` when those optional packages are installed,
  on the catalog and on random corpora of ``--sizes`` vectors, at the benchmarked dim and precision.

Usage::

    python bench/search_bench.py                        # bundled model, 384 dims float32
    python bench/search_bench.py --dim 128 --precision int8 --model models:/recipe-embedder@champion
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

QUERIES = (
    "quick vegan thai dinner with tofu",
    "gluten-free dessert with almonds",
    "something with chickpeas and spinach under 30 minutes",
    "a french soup with onions",
    "dairy-free breakfast ideas",
)


def _median_ms(fn: Callable[[], Any], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def cold_start(args: argparse.Namespace) -> float:
    """Seconds of one ``recipe-embed search`` process with an empty cache (data dir)."""
    with tempfile.TemporaryDirectory(prefix="search-bench-") as home:
        env = {**os.environ, "RECIPE_EMBED_HOME": home}
        cmd = [sys.executable, "-m", "pipelines.cli", "search", QUERIES[0], "--model", args.model]
        cmd += ["--dim", str(args.dim), "--precision", args.precision, "-k", "5"]
        if args.catalog:
            cmd += ["--catalog", args.catalog]
        t0 = time.perf_counter()
        got = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        seconds = time.perf_counter() - t0
        if got.returncode != 0:
            raise SystemExit(f"search failed ({got.returncode}): {got.stderr.strip()}")
        print(got.stdout.strip().splitlines()[0])
        print(got.stdout.strip().splitlines()[1])
        return seconds


def backends(vectors_fp32: Any, dim: int, precision: str, k: int, n_queries: int) -> dict[str, float]:
    """ms per query (search only) for numpy and, when installed, the library's faiss/usearch search."""
    import numpy as np

    from pipelines.search import build_index, search

    rng = np.random.default_rng(0)
    queries = vectors_fp32[rng.integers(0, len(vectors_fp32), n_queries)] + 0.01
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        index = build_index(vectors_fp32, [""] * len(vectors_fp32), dim, precision, Path(tmp), "0" * 64, True)
        it = iter(queries)
        out["numpy"] = _median_ms(lambda: search(index, next(it), k, normalize=True), n_queries)
    q = queries[:, :dim] / np.linalg.norm(queries[:, :dim], axis=1, keepdims=True)
    docs = index.vectors
    lib_precision = {"float32": "float32", "int8": "int8", "binary": "ubinary"}[precision]
    for name in ("faiss", "usearch"):
        try:
            __import__(name)
        except ImportError:
            continue
        from sentence_transformers.util import quantization as qz

        fn = getattr(qz, f"semantic_search_{name}")
        if name == "faiss" and precision == "int8":
            continue  # the library's faiss path has no int8 index (uint8 only)
        kwargs: dict[str, Any] = {"corpus_precision": lib_precision, "top_k": k, "rescore": False}
        if precision == "int8":
            kwargs["ranges"] = index.ranges
        _, _, corpus_index = fn(q[:1], corpus_embeddings=docs, output_index=True, **kwargs)
        it2 = iter(q)
        out[name] = _median_ms(
            lambda fn=fn, ci=corpus_index, it2=it2, kw=kwargs: fn(next(it2)[None, :], corpus_index=ci, **kw), n_queries
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bundled:all-MiniLM-L6-v2")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--precision", default="float32", choices=("float32", "int8", "binary"))
    ap.add_argument("--catalog", default=None)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--sizes", default="10000,100000", help="random corpora for the backend comparison")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from pipelines.catalog import catalog_digest, load_catalog
    from pipelines.config import load_config
    from pipelines.search import build_index, card_text, catalog_embeddings, load_served, resolve_model, search

    print(f"cpu threads: {torch.get_num_threads()}; model {args.model}; {args.dim} dims {args.precision}")
    t_cold = cold_start(args)
    print(f"cold start (one process, empty cache): {t_cold:.2f} s (goal < 10 s)")

    with tempfile.TemporaryDirectory(prefix="search-bench-") as home:
        overrides: dict[str, Any] = {"paths": {"data_dir": home}}
        if args.catalog:
            overrides["catalog"] = {"path": args.catalog}
        cfg = load_config("cpu", overrides=overrides)
        served = resolve_model(cfg, args.model)
        st = load_served(served)
        cards = [card_text(r) for _, r in load_catalog(cfg.catalog).iterrows()]
        digest = catalog_digest(cfg.catalog)
        t0 = time.perf_counter()
        full = catalog_embeddings(st, cards, served.cache_dir, digest)
        t_embed = time.perf_counter() - t0
        index = build_index(full, cards, args.dim, args.precision, served.cache_dir, digest, True)
        queries = iter(QUERIES * (args.queries // len(QUERIES) + 1))

        def one() -> None:
            q = st.encode_query([next(queries)], convert_to_numpy=True)
            search(index, np.asarray(q[0], dtype=np.float32), 5, normalize=True)

        one()
        t_warm = _median_ms(one, args.queries)
        print(f"catalog: {len(cards)} recipes embedded in {t_embed:.2f} s (once, then cached)")
        print(f"warm query (encode + search + top 5), median of {args.queries}: {t_warm:.1f} ms (goal < 50 ms)")

        print()
        print(f"search only, ms per query (median of {args.queries}), {args.dim} dims {args.precision}:")
        rng = np.random.default_rng(1)
        corpora = [("catalog", full)]
        for n in (int(s) for s in args.sizes.split(",") if s):
            corpora.append((f"random {n:,}", rng.normal(size=(n, full.shape[1])).astype(np.float32)))
        for label, vectors in corpora:
            got = backends(vectors, args.dim, args.precision, 5, args.queries)
            print(f"  {label:>16}: " + ", ".join(f"{k} {v:.3f}" for k, v in got.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
