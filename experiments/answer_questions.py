"""The paired comparisons behind results/README.md, re-derived from the committed run folders alone.

    python experiments/answer_questions.py        # after experiments/reproduce_results.py

Reads ``results/patch<N>/per_image.csv`` (the bits of every val and test image
of every verified schedule and seed; nothing is trained, no store is needed)
and writes results/answers.md: every comparison as A - B in bits per latent
element of y on the test photos, paired over images and the seeds both have
(the report seeds of runs that have them), the seed-to-seed variance
estimated over every seed the two have (report and selection seeds apart,
as the run does) and pooled over the file's pairs (a pair's own where
larger), each interval Bonferroni-corrected for every comparison of the
file: one family, fixed by the list of questions below before any number is
read. Each comparison says what it could detect (80% power), and "does the
order matter" is answered per patch with it. A run folder without
per_image.csv (made before it existed) is reported as such.
"""

from __future__ import annotations

from pathlib import Path

from ordersearch.evaluation import compare
from ordersearch.evaluation.statistics import larger, pair_seed_variance, pool
from ordersearch.run.folder import read_evaluations, read_report_seeds

ROOT = Path(__file__).resolve().parents[1]
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
    how = (f"trained to a plateau (cap {train['max_steps']} steps)" if train.get("lr_drops") else
           f"cosine learning rate over {train['max_steps']} steps")
    start = "from the any-order model" if train.get("start") == "any-order" else "from the prior-only start"
    border = "models that know the image border" if train["model"].get("outside") else "border-blind models"
    return f"{how}, {start}, {border}"


def evaluations() -> tuple[dict[str, list], dict[str, list], dict[str, set], dict[int, str], list[str]]:
    """Label ('4x4 dp') -> the per-seed evaluations reported (the report seeds of runs that have them), the same
    with every seed (the seed noise is estimated over all of them, report and selection seeds apart, as the run
    does) and the report seeds; patch -> training protocol, for every committed run folder that has
    per_image.csv; the folders without."""
    out, spread, reported, protocols, missing = {}, {}, {}, {}, []
    for n in PATCHES:
        folder = Path(f"results/patch{n}")
        if not (ROOT / folder / "per_image.csv").is_file():
            missing.append(str(folder))
            continue
        protocols[n] = protocol(ROOT / folder)
        found, report = read_evaluations(ROOT / folder), set(read_report_seeds(ROOT / folder))
        selecting = {k: [e for e in evs if e.seed not in report] or evs for k, evs in found.items()}
        leader = min(found, key=lambda k: sum(e.rate("val") for e in selecting[k]) / len(selecting[k]))
        for label, evs in found.items():
            for part in label.split("+"):
                out[f"{n}x{n} {part}"] = [e for e in evs if e.seed in report] or evs
                spread[f"{n}x{n} {part}"], reported[f"{n}x{n} {part}"] = evs, report
        for table in (out, spread, reported):  # the same evaluations: never compared
            table[f"{n}x{n} leader"] = table[f"{n}x{n} {leader.split('+')[0]}"]
        if not report:
            missing.append(f"{folder} chose and reported on the same seeds (made before report seeds)")
    return out, spread, reported, protocols, missing


def _shared_seeds(a: list, b: list) -> set[int]:
    """The seeds two schedules were both measured with: comparisons pair by seed."""
    return {e.seed for e in a} & {e.seed for e in b}


def seed_noise(pairs: list[tuple[str, str]], spread: dict[str, list], reported: dict[str, set]) -> dict:
    """(A, B) -> the seed variance of A - B and its dof over every seed both have, report and selection seeds
    apart (``evaluations``' ``spread``): the report seeds alone (2 at 2x2 and 4x4) give 1 dof, which made two
    intervals of the committed runs 11 and 25 times too wide where a pair's own variance exceeded the pool."""
    return {(a, b): pair_seed_variance(spread[a], spread[b], "test", reported[a] | reported[b]) for a, b in pairs}


def answers() -> tuple[str, dict]:
    """The text of results/answers.md and its comparisons by (A, B) label pair."""
    known, spread, reported, protocols, missing = evaluations()
    family = [(a, b) for _, pairs in QUESTIONS for a, b in pairs if a in known and b in known
              and known[a] is not known[b] and _shared_seeds(known[a], known[b])]
    own = seed_noise(family, spread, reported)
    pooled = pool(own.values())
    lines = ["# Answers, with intervals", "",
             "Made by `python experiments/answer_questions.py` from the committed `results/patch<N>/per_image.csv` "
             "(built-in latents, bits per latent element of y, test split). A - B < 0 means A is "
             "cheaper; intervals are paired over test images and the seeds both schedules have, the seed-to-seed "
             f"variance estimated over every seed both have (report and selection seeds apart) and pooled over the "
             f"file's pairs (a pair's own where larger), Bonferroni-corrected for the "
             f"{len(family)} comparisons of this file: one family, fixed by the questions before the data. "
             "\"80% power to find\" is the smallest difference a comparison detects 80% of the time at that level.",
             ""]
    lines += ["Training protocols: " + "; ".join(f"{n}x{n} run {p}" for n, p in protocols.items()) + ". A comparison "
              "across protocols is marked: it measures the protocol as much as the schedules.", ""]
    if missing:
        lines += [f"Caveats: {'; '.join(missing)}. Where a run chose its leader with the seeds it reports, the leader's "
                  "comparisons carry the luck that chose it (results/verdict_calibration.md: more false claims).", ""]
    found: dict[tuple[str, str], object] = {}
    for question, pairs in QUESTIONS:
        lines += [f"## {question}", ""]
        for a, b in pairs:
            if a not in known or b not in known:
                lines.append(f"- {a} vs {b}: not in the committed per-image files")
                continue
            if known[a] is known[b]:
                lines.append(f"- {a} vs {b}: " + ("the leader is this schedule" if a.endswith("leader") else
                                                   "the same schedule up to translation (one evaluation)"))
                continue
            if not _shared_seeds(known[a], known[b]):
                lines.append(f"- {a} vs {b}: not compared: no seed in common (runs with different report seeds)")
                continue
            c = found[a, b] = compare(known[a], known[b], comparisons=len(family),
                                      pooled=larger(own[a, b], pooled))
            mean = lambda evs: sum(e.bits_per_latent for e in evs) / len(evs)  # noqa: E731
            across = protocols[int(a.split("x")[0])] != protocols[int(b.split("x")[0])]
            lines.append(f"- {a} ({mean(known[a]):.4f}) vs {b} ({mean(known[b]):.4f}): {c}"
                         + (" **(across training protocols: not comparable)**" if across else ""))
        lines.append("")
    lines += ["## So, does the order matter?", ""]
    for n in PATCHES:
        controls = [c for (a, _), c in found.items() if a == f"{n}x{n} leader"]
        if not controls:
            continue
        beaten = [c for c in controls if c.verdict == "better"]
        largest = max(abs(c.relative_detectable) for c in controls)
        lines.append(f"- {n}x{n}: " + (
            f"yes: the leader beats {len(beaten)} of {len(controls)} controls, the closest by "
            f"{100 * min(abs(c.relative) for c in beaten):.2f}%" if beaten else
            f"no order effect above {100 * largest:.2f}% of the rate (80% power at this file's level) on these "
            "latents; smaller effects may exist"))
    lines.append("")
    return "\n".join(lines), found


def main() -> None:
    text, _ = answers()
    (ROOT / "results/answers.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
