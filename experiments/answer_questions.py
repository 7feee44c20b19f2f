"""The paired comparisons behind results/README.md, from the stores of the committed runs.

    python experiments/answer_questions.py        # after experiments/reproduce_results.py

Reads the dedicated evaluations of results/patch2, patch3 and patch4 (their
evaluation stores; nothing is trained) and writes results/answers.md: every
comparison as A - B in bits per latent element of y on the 12 test photos,
with its 95% interval (paired over test images and the seeds both have) and
a verdict. A schedule missing from a store is reported as missing.
"""

from __future__ import annotations

from pathlib import Path

from ordersearch import Schedule
from ordersearch.evaluation import EvaluationStore, Evaluator, TrainConfig, compare
from ordersearch.models import builtin
from ordersearch.schedule_io import load_schedule

PATCHES = (2, 3, 4)

QUESTIONS = [
    ("At 2x2, is the diagonal-second order better than the paper's raster release?",
     [("2x2 diagonal-second", "2x2 raster")]),
    ("How do dp, greedy and lin2023 compare at 4x4?",
     [("4x4 dp", "4x4 lin2023"), ("4x4 greedy", "4x4 lin2023"), ("4x4 dp", "4x4 greedy"),
      ("4x4 raster", "4x4 lin2023")]),
    ("At 3x3, where no order was released, how do dp and greedy compare with raster?",
     [("3x3 dp", "3x3 raster"), ("3x3 greedy", "3x3 raster"), ("3x3 dp", "3x3 greedy")]),
    ("What does the Pareto front say about checkerboard vs 4 vs 16 steps?",
     [("2x2 best-2-step", "2x2 checkerboard"), ("4x4 best-2-step", "4x4 checkerboard"),
      ("2x2 raster", "2x2 best-2-step"), ("2x2 raster", "2x2 checkerboard"),
      ("4x4 best-4-step", "2x2 raster"), ("4x4 best-4-step", "4x4 raster"), ("4x4 raster", "2x2 raster"), ("4x4 raster", "4x4 checkerboard"),
      ("2x2 checkerboard", "2x2 single"), ("3x3 best-4-step", "2x2 raster"), ("3x3 raster", "2x2 raster"),
      ("4x4 raster", "3x3 raster")]),
]


def schedules() -> dict[str, tuple[str, Schedule]]:
    """Label -> (run folder, schedule): named ones, plus the run's own results from its schedule files."""
    out = {f"{n}x{n} {name}": (f"patch{n}", Schedule.named(name, n))
           for n in PATCHES for name in ("raster", "lin2023", "checkerboard", "single") if n % 2 == 0 or name in
           ("raster", "single")}  # lin2023 and checkerboard: even patches only
    out["2x2 diagonal-second"] = ("patch2", Schedule.from_order([(0, 0), (1, 1), (0, 1), (1, 0)]))
    for n in PATCHES:
        for path in Path(f"results/patch{n}/schedules").glob("*.json"):
            for label in path.stem.split("+"):
                out.setdefault(f"{n}x{n} {label}", (f"patch{n}", load_schedule(path)[0]))
    return out


def main() -> None:
    splits = builtin().split()
    known = schedules()
    stores = {f"patch{n}": Evaluator(splits, TrainConfig(), "cpu", EvaluationStore(f"results/patch{n}/store"))
              for n in PATCHES}

    def evaluations(label: str) -> list:
        if label not in known:
            return []
        folder, schedule = known[label]
        found = [stores[folder].evaluate(schedule, s, cached_only=True)
                 for s in range(3)]
        return [e for e in found if e is not None]

    lines = ["# Answers, with intervals", "", "Made by `python experiments/answer_questions.py` from the evaluation "
             "stores of `results/patch2`, `patch3` and `patch4` (built-in latents, default TrainConfig, test split of "
             "12 photos, bits per latent element of y). A - B < 0 means A is cheaper; the interval is 95%, paired "
             "over test images and over the seeds both schedules have.", ""]
    for question, pairs in QUESTIONS:
        lines += [f"## {question}", ""]
        for a, b in pairs:
            ea, eb = evaluations(a), evaluations(b)
            if not ea or not eb:
                lines.append(f"- {a} vs {b}: not evaluated ({'A' if not ea else 'B'} missing from the stores)")
                continue
            k = min(len(ea), len(eb))
            lines.append(f"- {a} ({sum(e.bits_per_latent for e in ea[:k]) / k:.4f}) vs {b} "
                         f"({sum(e.bits_per_latent for e in eb[:k]) / k:.4f}): {compare(ea[:k], eb[:k])}")
        lines.append("")
    Path("results/answers.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
