"""What a run reports: ``summary.md`` and the table printed at the end of ``ordersearch run``."""

from __future__ import annotations

import numpy as np

from ..data.latents import Splits
from ..device import describe_machine, resolve_device
from ..search.base import grid_text
from .config import CONTROL
from .result import RunResult


def summary(r: RunResult, splits: Splits, command: str) -> str:
    c, v = r.config, r.verified
    n, device = c.patch, resolve_device(c.device)
    lines = [f"# ordersearch run: {n}x{n} patch", "",
             f"Command: `{command or 'ordersearch run --patch ' + str(n)}`", "",
             f"Data: {splits.train.name} (fingerprint {r.data}); train {len(splits.train)} / val {len(splits.val)} / "
             f"test {len(splits.test)} entries; rates are bits per latent element of y; choices on val, reported numbers on test. "
             f"Machine: {describe_machine(device)}, device {device}.", "",
             *_checks(r),
             "## Verified (dedicated training)", "",
             f"Each candidate trained with {c.seeds} selection seed(s), more (up to {c.max_seeds}) for candidates "
             f"indistinguishable from the leader on val, then with {c.report_seeds} fresh report seed(s) after "
             f"every choice was made; "
             + (f"trained to a plateau on val (cap {c.train.max_steps} steps)" if c.train.lr_drops else
                f"{c.train.max_steps} steps max, early stopping on val") +
             (", each started from the run's any-order model of its seed (one model trained over random orders, "
              "`--start any-order`). " if c.train.start == "any-order" else
              ", each started from the prior-only warm start of its seed (`--start prior`). ") +
             "The leader is the lowest on the **val** split ("
             + ("whole latents, the border included" if c.choose_on == "whole" else
                "the interior of its latents, `--choose-on interior`") +
             "); it is compared with every other candidate on the test "
             f"split with the report seeds' models (their test numbers saw no choice), paired over images and seeds, "
             f"with the run's pooled seed-to-seed variance ({_pooled(v)}) or a pair's own where larger, each interval "
             f"Bonferroni-corrected for the run's family of {max(1, len(v.comparisons))} comparisons (the protocol's, "
             f"fixed before the data). Test numbers below are the report seeds' means; val numbers the selection "
             f"seeds'.", ""]
    lines += [f"- {line}" for line in v.report()]
    best = v.best_set()
    lines += ["", f"Best set (not shown worse than the leader): **{', '.join(best)}**."
              + (" These are indistinguishable at this budget: more seeds or data would be needed to separate "
                 "them." if len(best) > 1 else ""), ""]
    lines += [_step_cap(r), ""]
    if v.unresolved and c.max_seeds > c.seeds:
        lines += [f"The selection seed budget ({c.max_seeds}) ran out with {len(v.unresolved)} candidate(s) "
                  f"indistinguishable from the leader on val: {', '.join(v.unresolved)}.", ""]
    lines += _order_matters(v)
    lines += _edges(v)
    lines += _placement(r)
    lines += ["## Search (cheap estimator: " + c.estimator + ")", "",
              "| strategy | rate (cheap) | scorer calls | schedule |", "|---|---|---|---|"]
    for name, res in r.results.items():  # its seconds are under Timings
        lines.append(f"| {name} | {res.rate:.4f} | {res.calls} | {grid_text(res.schedule)} |")
    lines += ["", f"Agreement of the cheap estimator with dedicated training over the {len(r.candidates)} verified "
              f"schedules: {r.fidelity}. Only the dedicated numbers decide.", ""]
    lines += [trust_line(r), "",
              "## Rate vs decoding stages (Pareto front, cheap estimator)", "",
              "| stages | best rate | schedule |", "|---|---|---|"]
    lines += [f"| {p.stages} | {p.rate:.4f} | {grid_text(p.schedule)} |" for p in r.front]
    evs = [e for group in v.evaluations.values() for e in group]
    lines += ["", "## Timings (seconds)", "",
              f"This invocation: {v.trained_now} of the {len(evs)} evaluations trained now, the rest found in the "
              f"evaluation store (their training time is not in these numbers).", ""]
    lines += [f"- {k}: {t:.1f}" for k, t in r.timings.items()]
    return "\n".join(lines) + "\n"


def _step_cap(r: RunResult) -> str:
    """How many trainings ran into the step cap: with plateau training, each of those had not converged."""
    t = r.config.train
    evs = [e for group in r.verified.evaluations.values() for e in group]
    capped = sum(e.steps >= t.max_steps for e in evs)
    if t.lr_drops:
        return (f"Training to a plateau (learning rate divided by 10 at {t.lr_drops} plateaus, stop at the next; cap "
                f"{t.max_steps} steps): {capped} of {len(evs)} trainings reached the cap"
                + (" before a plateau: they had not converged." if capped else "."))
    return (f"Cosine learning rate over a fixed {t.max_steps} steps: {capped} of {len(evs)} trainings ran to the end "
            f"of it, so nothing shows they converged (plateau training: `TrainConfig(lr_drops=2)`).")


def _checks(r: RunResult) -> list[str]:
    """The consistency checks: at the top, loudly, when one failed (``run.checks``)."""
    if not r.checks:
        return []
    failed = [c for c in r.checks if c.status == "failed"]
    head = (f"**Consistency checks failed ({len(failed)} of {len(r.checks)})**: the protocol carries a bias as large "
            "as these differences; read every verdict below with it in mind." if failed else
            f"Consistency checks: none of {len(r.checks)} failed.")
    return [head, "", *[f"- {c.name}: **{c.status}** ({c.detail})" for c in r.checks], ""]


def trust_line(r: RunResult) -> str:
    """How far the search on the cheap table can be trusted: does it order pairs of orders as training does?"""
    cheap, ceiling = r.trust
    if cheap != cheap or ceiling != ceiling:  # NaN: fewer than two orders, or one seed
        return ("How far the search can be trusted: not measurable here (it needs two verified orders and two "
                "seeds).")
    verdict = ("as well as a second training seed does" if cheap >= ceiling - 0.10 else
               "worse than chance" if cheap < 0.5 else "better than chance, short of a second seed")
    return (f"How far the search can be trusted: over the verified orders of this run, the cheap table orders "
            f"{100 * cheap:.0f}% of the pairs as dedicated training does on the interior of the test latents "
            f"(where both measure f(C); mean over seeds), where a training seed agrees with the mean of the other "
            f"seeds on {100 * ceiling:.0f}%: {verdict}.")


def _pooled(v) -> str:
    var, dof = v.pooled
    return f"sd {var ** 0.5:.5f} bits/latent, {dof} degrees of freedom" if dof else "none: one seed, no claim"


def _order_matters(v) -> list[str]:
    """Whether the leader beats the negative controls: does the order matter on these data?"""
    controls = [k for k in v.ranking() if k.startswith(CONTROL) and k != v.winner]
    if not controls:
        return []
    lines = ["## Does the order matter here?", ""]
    for k in controls:
        cmp = v.comparisons[k]
        lines.append(f"- leader - {k} = {cmp.difference:+.4f} bits/latent ({100 * cmp.relative:+.2f}%), "
                     f"{100 * cmp.level:.1f}% interval [{cmp.low:+.4f}, {cmp.high:+.4f}]: {cmp.verdict}; "
                     f"detectable with 80% power: {_percent(cmp.relative_detectable)}")
    return lines + ["", order_answer(v), ""]


def _percent(x: float) -> str:
    return f"{100 * abs(x):.2f}%" if np.isfinite(x) else "nothing (training noise unknown: one seed)"


def order_answer(v) -> str:
    """Does the order matter, with the effect this run could have found: "yes: X% [a, b]" or "no order effect
    above X% (80% power)"."""
    controls = [k for k in v.ranking() if k.startswith(CONTROL) and k != v.winner]
    if not controls:
        return "Not asked: no negative control was verified."
    beaten = [k for k in controls if v.comparisons[k].verdict == "better"]
    largest = max(abs(v.comparisons[k].relative_detectable) for k in controls)
    if not np.isfinite(largest):
        return ("Not shown: training noise is unknown (one seed of each kind): nothing can be claimed either way; "
                "use --seeds 2 or more.")
    if beaten:
        c = min((v.comparisons[k] for k in beaten), key=lambda c: abs(c.relative))
        gap = f"the closest control beaten, control - leader: {c.percent(of_b=True)}"
        return (f"Yes: the leader beats every negative control ({gap})." if len(beaten) == len(controls) else
                f"Partly: the leader beats {len(beaten)} of {len(controls)} negative controls ({gap}); against the "
                f"others this run could detect {_percent(largest)} (80% power).")
    return ("Not shown: the leader is indistinguishable from the negative controls (the cheap estimator's worst "
            f"order and random orders): no order effect above {_percent(largest)} of the rate (80% power at this "
            "run's corrected level) on these data; smaller effects may exist.")


def _edges(v) -> list[str]:
    """Interior and edge rates apart, and the verdicts again on the interior alone (where edges cannot move them)."""
    evs = [e for group in v.evaluations.values() for e in group]
    if not evs or any(e.edge_image_bits is None for e in evs):
        return []  # evaluations stored before edges were measured
    inner = np.asarray(evs[0].split_bits("test-interior")[1])
    if (inner <= 0).any():
        return ["## Edges", "", "Not reported: some test latents have no interior (every latent is within the "
                "context window's reach of an edge).", ""]
    total = np.sum(evs[0].image_elements)
    inside = v.compared_on("test-interior")
    lines = ["## Edges", "",
             f"The edge is every latent within the context window's reach of the latent's border "
             f"({100 * (1 - inner.sum() / total):.1f}% of the test latents), where part of the window lies past the "
             "image (the models read which part, and were trained there as often as it occurs) and the patch grid's "
             "alignment with the border matters; translation is an exact symmetry only inside. Rates apart, and "
             "each schedule against the leader on the interior alone (paired, pooled seed variance, the same "
             "correction); verdicts speak of the schedule, as above:", "",
             "| schedule | interior | edge | this - leader, interior | verdict on the interior | verdict on the whole "
             "latent |", "|---|---|---|---|---|---|"]
    differ = []
    for label in v.ranking():
        group = v.reported(label)
        interior = np.mean([e.rate("test-interior") for e in group])
        edge = np.mean([e.rate("test-edge") for e in group])
        if label == v.winner:
            lines.append(f"| {label} | {interior:.4f} | {edge:.4f} | leader | | |")
            continue
        c = inside[label]
        whole = v.comparisons[label].of_b
        if c.of_b != whole:
            differ.append(label)
        lines.append(f"| {label} | {interior:.4f} | {edge:.4f} | {-c.difference:+.4f} [{-c.high:+.4f}, {-c.low:+.4f}] "
                     f"| {c.of_b} | {whole} |")
    lines += ["", ("The interior verdicts agree with the whole-latent ones." if not differ else
                   f"On the interior alone the verdict differs for: {', '.join(differ)}: there the edges decide.")
              + " (this - leader: positive means this schedule spends more.)", ""]
    return lines


def _placement(r: RunResult) -> list[str]:
    """The leader's translates on val, and the chosen one (best.json) against the leader on test."""
    p, v = r.placed, r.verified
    if p is None:
        return []
    leader = v.schedules[v.winner]
    c = p.comparison
    ranked = sorted(p.val.items(), key=lambda kv: kv[1])
    lines = ["## Where the patch grid meets the border", "",
             f"One training serves every translate of an order, but on whole images the translates differ at the edges "
             f"(other positions along the border). The leader's {len(p.val)} translates, measured on val with its "
             f"models moved (no training):", "",
             "| shift | grid | val |", "|---|---|---|"]
    lines += [f"| {leader.translation_to(t)} | {grid_text(t)} | {rate:.4f} |" for t, rate in ranked]
    shift = leader.translation_to(p.schedule)
    if shift == (0, 0):
        return lines + ["", "The leader as verified is the lowest on val: best.json holds it as it is.", ""]
    lines += ["", f"best.json holds the lowest on val, shift {shift}: on test "
              f"{np.mean([e.bits_per_latent for e in p.evaluations]):.4f} bits/latent; it - the leader as verified = "
              f"{c.difference:+.4f} ({100 * c.relative:+.2f}%), 95% interval [{c.low:+.4f}, {c.high:+.4f}] (same "
              f"models: the interval holds images and the seeds' spread of the difference): {c.verdict}.", ""]
    return lines


def terminal_table(r: RunResult) -> str:
    v = r.verified
    width = max(len(k) for k in v.evaluations)
    head = (f"{'schedule':<{width}}  {'test':>7}  {'val':>7}  {r.config.estimator:>15}  verdict vs leader (this - "
            f"leader, {100 * next(iter(v.comparisons.values())).level if v.comparisons else 95:.1f}% interval)")
    rows = [head, "-" * len(head)]
    for label in v.ranking():
        c = v.comparisons.get(label)
        verdict = "leader" if label == v.winner else f"{c.of_b} ({c.percent(of_b=True)})"
        rows.append(f"{label:<{width}}  {v.mean(label):7.4f}  {v.mean(label, 'val'):7.4f}  {r.cheap[label]:15.4f}  "
                    f"{verdict}")
    return "\n".join(rows)
