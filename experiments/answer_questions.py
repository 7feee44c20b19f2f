"""The paired comparisons behind results/README.md, re-derived from the committed run folders alone.

    python experiments/answer_questions.py        # after experiments/reproduce_results.py

Reads ``results/patch<N>/per_image.csv`` (the bits of every val and test image
of every verified schedule and seed; nothing is trained, no store is needed)
and writes results/answers.md: every comparison as A - B in bits per latent
element of y on the test photos, paired over images and the seeds both have,
the seed-to-seed variance pooled over the question's pairs, each interval
Bonferroni-corrected for the number of comparisons in its question. A run
folder without per_image.csv (made before it existed) is reported as such.
"""

from __future__ import annotations

from pathlib import Path

from ordersearch.evaluation import compare, pooled_seed_variance
from ordersearch.run.folder import read_evaluations

PATCHES = (2, 3, 4)

QUESTIONS = [
    ("At 2x2, is the diagonal-second order (quadtree at 2x2, DCVC-DC / TinyLIC) better than the paper's raster "
     "release?", [("2x2 quadtree", "2x2 raster")]),
    ("How do dp, greedy and lin2023 compare at 4x4?",
     [("4x4 dp", "4x4 lin2023"), ("4x4 greedy", "4x4 lin2023"), ("4x4 dp", "4x4 greedy"),
      ("4x4 raster", "4x4 lin2023")]),
    ("At 3x3, where no order was released, how do dp and greedy compare with raster?",
     [("3x3 dp", "3x3 raster"), ("3x3 greedy", "3x3 raster"), ("3x3 dp", "3x3 greedy")]),
    ("What does the Pareto front say about checkerboard vs 4 vs 16 stages?",
     [("2x2 best-2-stage", "2x2 checkerboard"), ("4x4 best-2-stage", "4x4 checkerboard"),
      ("2x2 raster", "2x2 best-2-stage"), ("2x2 raster", "2x2 checkerboard"), ("4x4 best-4-stage", "2x2 raster"),
      ("4x4 best-4-stage", "4x4 raster"), ("4x4 raster", "2x2 raster"), ("4x4 raster", "4x4 checkerboard"),
      ("2x2 checkerboard", "2x2 single"), ("3x3 best-4-stage", "2x2 raster"), ("3x3 raster", "2x2 raster"),
      ("4x4 raster", "3x3 raster")]),
    ("Consistency: do equal schedules measured in different runs agree (checkerboard at patch 2 and 4, no context "
     "at every patch; all three runs were made on the same 2-core CPU)?",
     [("2x2 checkerboard", "4x4 checkerboard"), ("2x2 single", "3x3 single"), ("2x2 single", "4x4 single"),
      ("3x3 single", "4x4 single")]),
    ("Does the order matter at all (the leader against the negative controls)?",
     [(f"{n}x{n} leader", f"{n}x{n} control-{c}") for n in PATCHES for c in ("worst-cheap", "random-1", "random-2")]),
]


def protocol(folder: Path) -> str:
    """A run's training protocol, from its best.json: comparisons across protocols are flagged, since the
    protocol moves every rate by more than orders do (results/convergence.md)."""
    from ordersearch.schedule_io import load_schedule

    train = load_schedule(folder / "best.json")[1].provenance["config"]["train"]
    return (f"trained to a plateau (cap {train['max_steps']} steps)" if train.get("lr_drops") else
            f"cosine learning rate over {train['max_steps']} steps")


def evaluations() -> tuple[dict[str, list], dict[int, str], list[str]]:
    """Label ('4x4 dp') -> per-seed evaluations and patch -> training protocol, for every committed run folder
    that has per_image.csv; the folders without."""
    out, protocols, missing = {}, {}, []
    for n in PATCHES:
        folder = Path(f"results/patch{n}")
        if not (folder / "per_image.csv").is_file():
            missing.append(str(folder))
            continue
        protocols[n] = protocol(folder)
        found = read_evaluations(folder)
        leader = min(found, key=lambda k: sum(e.rate("val") for e in found[k]) / len(found[k]))
        for label, evs in found.items():
            for part in label.split("+"):
                out[f"{n}x{n} {part}"] = evs
        out[f"{n}x{n} leader"] = found[leader]
    return out, protocols, missing


def main() -> None:
    known, protocols, missing = evaluations()
    lines = ["# Answers, with intervals", "",
             "Made by `python experiments/answer_questions.py` from the committed `results/patch<N>/per_image.csv` "
             "(built-in latents, test split of 12 photos, bits per latent element of y). A - B < 0 means A is "
             "cheaper; intervals are paired over test images and the seeds both schedules have, the seed-to-seed "
             "variance pooled over each question's pairs, Bonferroni-corrected for the comparisons of the question.",
             ""]
    lines += ["Training protocols: " + "; ".join(f"{n}x{n} run {p}" for n, p in protocols.items()) + ". A comparison "
              "across protocols is marked: it measures the protocol as much as the schedules.", ""]
    if missing:
        lines += [f"Not re-derivable (made before per_image.csv existed; being re-run): {', '.join(missing)}.", ""]
    for question, pairs in QUESTIONS:
        lines += [f"## {question}", ""]
        present = [(a, b) for a, b in pairs if a in known and b in known]
        pooled = pooled_seed_variance([(known[a], known[b]) for a, b in present]) if present else (0.0, 0)
        for a, b in pairs:
            if (a, b) not in present:
                lines.append(f"- {a} vs {b}: not in the committed per-image files")
                continue
            if known[a] is known[b]:
                lines.append(f"- {a} vs {b}: the same schedule up to translation (one evaluation)")
                continue
            c = compare(known[a], known[b], comparisons=len(present), pooled=pooled)
            mean = lambda evs: sum(e.bits_per_latent for e in evs) / len(evs)  # noqa: E731
            across = protocols[int(a.split("x")[0])] != protocols[int(b.split("x")[0])]
            lines.append(f"- {a} ({mean(known[a]):.4f}) vs {b} ({mean(known[b]):.4f}): {c}"
                         + (" **(across training protocols: not comparable)**" if across else ""))
        lines.append("")
    Path("results/answers.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
