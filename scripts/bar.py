"""The robust-policy bar (issue "A policy that holds outside its training distribution") for one
(cell, seed), shared by scripts/robust.sh and scripts/validation_probe.sh so that both judge by
the same definition: the policy's paired interval against the best deployable baseline above
zero (or within 0.005 of it at x20), its p99 at most 1.2x that baseline's, and its regret ratio
at most 0.5 at x1 and 0.8 otherwise (n/a, where every baseline matches the oracle, passes).
Where the best baseline matches the oracle (no ratio), nothing can beat it: "never worse" is
then an interval whose low end is not below zero."""


def meets_bar(scale, ci95_low, regret_ratio, p99, best_p99):
    interval = ci95_low > 0 or (scale >= 20 and ci95_low > -0.005) or (regret_ratio is None and ci95_low >= 0)
    ratio_bar = 0.5 if scale == 1 else 0.8
    return interval and p99 <= 1.2 * best_p99 and (regret_ratio is None or regret_ratio <= ratio_bar)
