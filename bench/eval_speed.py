"""Time evaluating all Matryoshka dims against one plain encode pass of the same texts.

Three timings on the same model, device and texts (queries + distinct corpus texts):

* ``encode``: one ``model.encode`` pass over all the texts (the reference, 1.0x);
* ``library``: ``SequentialEvaluator([InformationRetrievalEvaluator(truncate_dim=d) ...])``,
  which re-encodes queries and corpus for every dimension;
* ``ours``: ``pipelines.evaluation.evaluate_pairs`` (encode once, slice + renormalize per dim);
* ``ours + serving grid``: the same plus the serving grid (float32 / int8 / binary, with and without
  rescoring, per dim; :mod:`pipelines.serving`), which adds one encode of ``--calibration-texts``
  train-side documents (int8 ranges) and the rankings; that encode is also timed alone.

Goal: ours <= 1.2x one encode; with the serving grid <= 1.3x. Usage::

    python bench/eval_speed.py                    # 2,000 texts on CPU, 4,000 on a GPU
    python bench/eval_speed.py --n-texts 500 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: tests.reference_eval

_INGREDIENT_LIST = (
    "curry leaf,rice cakes,bacon,rosemary,paneer,bitter melon,kale,bok choy,cinnamon,ground lamb,red lentils,"
    "orange juice,jasmine rice,sriracha,honey,nutmeg,green zucchini,red onion,broccoli,feta,chickpeas,"
    "coconut milk,beef stock powder,angel hair rice noodles,vanilla extract,toasted sesame oil,canned tomato "
    "puree,frozen ube,methi,brown lentils,vegan ground beef,thai red curry paste,garlic,ginger,spinach,tofu,"
    "black beans,sweet potato,mushrooms,basil,quinoa,yogurt,lime,cilantro,cheddar,eggs,salmon,shrimp,"
    "chicken thighs,pork belly,cauliflower,carrots,peas,corn,avocado,tahini,miso,maple syrup,oats,almonds"
)
_QUESTIONS = (
    "What recipes can be made using {x} and {y}?",
    "Can you provide recipe ideas with {x} and {y}?",
    "What dishes can be created with {x} and {y}?",
    "What are the culinary uses of {x} and {y}?",
)


def synthetic_pairs(n_pairs: int, seed: int = 0) -> Any:
    """``n_pairs`` card-style pairs with distinct positives (an ingredient pair is used once)."""
    import pandas as pd

    rng = random.Random(seed)
    ingredients = _INGREDIENT_LIST.split(",")
    combos = [(x, y) for i, x in enumerate(ingredients) for y in ingredients[i + 1 :]]
    rng.shuffle(combos)
    rows = []
    for i in range(n_pairs):
        x, y = combos[i % len(combos)]
        suffix = "" if i < len(combos) else f" (batch {i // len(combos)})"
        rows.append(
            {
                "anchor": rng.choice(_QUESTIONS).format(x=x, y=y) + suffix,
                "positive": f"No recipes found with these {x} and {y}!{suffix}",
                "intent": "ingredient_pair",
                "group_id": i,
            }
        )
    return pd.DataFrame(rows)


def write_synthetic_dataset(out: Path, n_train: int, n_eval: int, n_validation: int, seed: int = 0) -> None:
    """``out/{train,validation,eval}.parquet`` from :func:`synthetic_pairs`, shuffled: ``n_train`` pairs of
    which the first ``n_validation`` are the validation split, then ``n_eval`` eval pairs."""
    pairs = synthetic_pairs(n_train + n_eval, seed=seed).sample(frac=1.0, random_state=seed)
    train, eval_ = pairs.iloc[:n_train], pairs.iloc[n_train:]
    out.mkdir(parents=True, exist_ok=True)
    train.iloc[n_validation:].to_parquet(out / "train.parquet", index=False)
    train.iloc[:n_validation].to_parquet(out / "validation.parquet", index=False)
    eval_.to_parquet(out / "eval.parquet", index=False)


def _timed(fn: Callable[[], Any], device: str, repeats: int) -> tuple[float, Any]:
    import torch

    best, out = float("inf"), None
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    import torch

    default_n = 4000 if torch.cuda.is_available() else 2000
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-texts", type=int, default=default_n, help="queries + corpus texts (half each)")
    ap.add_argument("--dims", default="384,256,128,64")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--model", default="bundled:all-MiniLM-L6-v2")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--repeats", type=int, default=1, help="best of N for each timing")
    ap.add_argument("--calibration-texts", type=int, default=256, help="train-side documents for int8 ranges")
    ap.add_argument("--no-library", action="store_true", help="skip the library's (slow) evaluator")
    args = ap.parse_args(argv)

    from sentence_transformers import SentenceTransformer

    from pipelines.evaluation import ServingGrid, build_ir_data, evaluate_pairs, score_pairs
    from pipelines.models import resolve_model_path
    from tests.reference_eval import reference_evaluate  # the library's evaluator, kept beside the tests

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dims = tuple(int(d) for d in args.dims.split(","))
    model = SentenceTransformer(resolve_model_path(args.model), device=device)
    model.max_seq_length = args.max_seq_length
    pairs = synthetic_pairs(args.n_texts // 2)
    queries, corpus, _ = build_ir_data(pairs)
    texts = [*queries.values(), *corpus.values()]

    model.encode(texts[: args.batch_size], batch_size=args.batch_size)  # warm-up (kernels, allocator)
    t_encode, _ = _timed(
        lambda: model.encode(texts, batch_size=args.batch_size, convert_to_tensor=True), device, args.repeats
    )
    t_ours, ours = _timed(lambda: evaluate_pairs(model, pairs, dims, args.batch_size), device, args.repeats)
    calibration = synthetic_pairs(args.n_texts // 2 + args.calibration_texts, seed=1)["positive"].tolist()
    calibration = calibration[-args.calibration_texts :]
    t_cal, _ = _timed(
        lambda: model.encode(calibration, batch_size=args.batch_size, convert_to_tensor=True), device, args.repeats
    )
    grid_request = ServingGrid(calibration, rescore_multiplier=4)
    t_grid, with_grid = _timed(
        lambda: score_pairs(model, pairs, dims, args.batch_size, serving=grid_request), device, args.repeats
    )
    if args.no_library:
        t_lib, ref = float("nan"), ours
    else:
        t_lib, ref = _timed(lambda: reference_evaluate(model, pairs, dims, args.batch_size), device, args.repeats)
    # the library's evaluator has the whole-eval keys only (no per-intent or per-slice groups)
    max_diff = max(abs(ours[k] - ref[k]) for k in ours if k in ref)
    max_diff = max(max_diff, *(abs(ours[k] - with_grid.metrics[k]) for k in ours))

    name = torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {name}; model: {args.model}; max_seq_length {args.max_seq_length}; batch {args.batch_size}")
    print(f"texts: {len(texts)} ({len(queries)} queries + {len(corpus)} corpus); dims: {list(dims)}")
    print()
    print(f"| {'method':<42} | {'seconds':>8} | {'x one encode':>12} |")
    print(f"|{'-' * 44}|{'-' * 10}|{'-' * 14}|")
    rows = [
        ("one model.encode pass (reference)", t_encode),
        ("library SequentialEvaluator(IR x dims)", t_lib),
        ("ours evaluate_pairs (encode once, slice)", t_ours),
        (f"ours + serving grid ({len(calibration)} calibration)", t_grid),
        (f"  of which: encode {len(calibration)} calibration texts", t_cal),
    ]
    for label, t in rows:
        print(f"| {label:<42} | {t:>8.2f} | {t / t_encode:>11.2f}x |")
    print()
    print(f"library / ours: {t_lib / t_ours:.2f}x faster; max |metric difference|: {max_diff:.2e}")
    goal = t_ours / t_encode <= 1.2
    print(f"goal ours <= 1.2x one encode: {'met' if goal else 'NOT met'} ({t_ours / t_encode:.2f}x)")
    goal_grid = t_grid / t_encode <= 1.3
    cells = len((with_grid.serving or {}).get("cells") or [])
    print(
        f"goal ours + serving grid ({cells} cells) <= 1.3x one encode: "
        f"{'met' if goal_grid else 'NOT met'} ({t_grid / t_encode:.2f}x)"
    )
    return 0 if max_diff <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
