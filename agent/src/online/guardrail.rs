//! The guardrail of online learning: the policy serving before an update is the last good one,
//! with the mean reward of the last `window` requests it served. A new policy serves the next
//! `window` requests; if their mean reward falls below the good one's by more than `margin`,
//! the good policy comes back, otherwise the new one becomes the good one.

use std::collections::VecDeque;

pub struct Guardrail<P> {
    window: usize,
    margin: f64,
    /// Rewards of the requests the good policy served, newest last (at most `window`).
    baseline: VecDeque<f64>,
    /// A new policy on trial: the good one it replaced, the good one's mean, its own rewards.
    trial: Option<(P, f64, Vec<f64>)>,
}

/// What a finished request decided.
#[derive(Debug, PartialEq)]
pub enum Verdict<P> {
    /// Nothing yet.
    Pending,
    /// The policy on trial became the good one: (its mean reward, the good one's).
    Accepted(f64, f64),
    /// The policy on trial fell short: put this one back. (its mean reward, the good one's)
    RolledBack(P, f64, f64),
}

impl<P> Guardrail<P> {
    pub fn new(window: usize, margin: f64) -> Self {
        Self { window: window.max(1), margin, baseline: VecDeque::new(), trial: None }
    }

    /// Whether a new policy is being judged now.
    pub fn on_trial(&self) -> bool {
        self.trial.is_some()
    }

    /// The good policy's mean reward over its last requests, once it has any.
    pub fn baseline(&self) -> Option<f64> {
        (!self.baseline.is_empty()).then(|| self.baseline.iter().sum::<f64>() / self.baseline.len() as f64)
    }

    /// A new policy starts serving in place of `good`. Without a baseline yet there is nothing
    /// to judge it by, so it is accepted as it is (and `false` returned).
    pub fn start_trial(&mut self, good: P) -> bool {
        match self.baseline() {
            Some(mean) => {
                self.trial = Some((good, mean, Vec::with_capacity(self.window)));
                true
            }
            None => false,
        }
    }

    /// Records the reward of a finished request served by the current policy.
    pub fn record(&mut self, reward: f64) -> Verdict<P> {
        let Some((_, good_mean, rewards)) = self.trial.as_mut() else {
            self.baseline.push_back(reward);
            if self.baseline.len() > self.window {
                self.baseline.pop_front();
            }
            return Verdict::Pending;
        };
        rewards.push(reward);
        if rewards.len() < self.window {
            return Verdict::Pending;
        }
        let good_mean = *good_mean;
        let (good, _, rewards) = self.trial.take().expect("on trial");
        let mean = rewards.iter().sum::<f64>() / rewards.len() as f64;
        if mean < good_mean - self.margin {
            // the good policy's record stands
            Verdict::RolledBack(good, mean, good_mean)
        } else {
            self.baseline = rewards.into();
            Verdict::Accepted(mean, good_mean)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worse_policy_is_rolled_back_and_a_good_one_kept() {
        let mut guard = Guardrail::new(4, 0.5);
        assert!(!guard.start_trial("first"), "no baseline yet: nothing to judge by");
        for _ in 0..4 {
            assert_eq!(guard.record(2.0), Verdict::Pending);
        }
        assert!(guard.start_trial("good"));
        for r in [1.0, 1.2, 1.1] {
            assert_eq!(guard.record(r), Verdict::Pending);
        }
        match guard.record(1.3) {
            Verdict::RolledBack(p, mean, good) => {
                assert_eq!(p, "good");
                assert!((mean - 1.15).abs() < 1e-9 && (good - 2.0).abs() < 1e-9);
            }
            other => panic!("expected a rollback, got {other:?}"),
        }
        assert_eq!(guard.baseline(), Some(2.0));
        assert!(guard.start_trial("good"));
        for _ in 0..3 {
            guard.record(1.8);
        }
        assert_eq!(guard.record(1.8), Verdict::Accepted(1.8, 2.0), "within the margin");
        assert_eq!(guard.baseline(), Some(1.8));
    }
}
