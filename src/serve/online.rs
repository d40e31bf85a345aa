//! `serve --online`: every finished request becomes a transition (reward from its measured
//! latency, the simulator's definition), and demand estimation learns the worker's time too
//! (`demand`, owned by the serving state). A
//! trainer thread runs a PPO update (`rlsched_agent::online`) every `update_every` requests on
//! its own copy of the policy and swaps the result into the serving slot, which requests only
//! lock for a decision: no request waits on training. The guardrail judges each new policy on
//! the requests it serves and puts the last good one back when it falls short. Checkpoints are
//! written by the trainer, periodically and (after draining) at shutdown; `online/*` tags go to
//! TensorBoard.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rlsched_agent::checkpoint::{self, Sidecar};
use rlsched_agent::metrics::{MetricsSink, TensorBoardSink};
use rlsched_agent::online::{Guardrail, OnlineConfig, OnlineLearner, Transition, Verdict};
use rlsched_agent::policy::PolicyScheduler;
use rlsched_agent::Policy;
use rlsched_env::EnvConfig;

use crate::serve::decide::Choice;
use crate::serve::metrics::Metrics;
use crate::serve::ServeError;

enum Message {
    Learn(Vec<Transition>),
    Accept,
    RollBack,
    /// Write a checkpoint of the serving policy; answer when it is written.
    Checkpoint(Option<mpsc::Sender<Result<(), String>>>),
}

/// Where checkpoints go and what their sidecar carries over from the loaded one.
pub struct CheckpointPlan {
    pub dir: PathBuf,
    pub loaded: Sidecar,
    pub env: EnvConfig,
    pub max_plans: usize,
}

pub struct Online {
    config: OnlineConfig,
    pending: Mutex<Vec<Transition>>,
    guard: Arc<Mutex<Guardrail<Policy>>>,
    slot: Arc<Mutex<PolicyScheduler>>,
    training: Arc<AtomicBool>,
    finished: AtomicUsize,
    metrics: Arc<Metrics>,
    trainer: Mutex<mpsc::Sender<Message>>,
    sink: Arc<Mutex<Option<TensorBoardSink>>>,
    /// A periodic checkpoint is waiting for the trainer: another is not queued behind it
    /// (with `checkpoint_every = 1` writes piled up and shutdown waited for all of them).
    checkpoint_queued: Arc<AtomicBool>,
}

impl Online {
    /// Starts the trainer thread. `learner` holds the training copy of the serving policy.
    pub fn start(
        config: OnlineConfig,
        learner: OnlineLearner,
        slot: Arc<Mutex<PolicyScheduler>>,
        metrics: Arc<Metrics>,
        plan: CheckpointPlan,
        runs_dir: &std::path::Path,
    ) -> Result<Arc<Self>, ServeError> {
        let sink = TensorBoardSink::new(runs_dir).map_err(|e| ServeError::Config(format!("{}: {e}", runs_dir.display())))?;
        let sink = Arc::new(Mutex::new(Some(sink)));
        let guard = Arc::new(Mutex::new(Guardrail::new(config.reward_window, config.rollback_margin)));
        let training = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let checkpoint_queued = Arc::new(AtomicBool::new(false));
        let trainer = Trainer {
            learner,
            slot: slot.clone(),
            guard: guard.clone(),
            training: training.clone(),
            metrics: metrics.clone(),
            sink: sink.clone(),
            plan,
            checkpoint_queued: checkpoint_queued.clone(),
        };
        std::thread::Builder::new()
            .name("online-trainer".into())
            .spawn(move || trainer.run(rx))
            .map_err(|e| ServeError::Config(format!("starting the online trainer: {e}")))?;
        Ok(Arc::new(Self {
            checkpoint_queued,
            config,
            pending: Mutex::new(Vec::new()),
            guard,
            slot,
            training,
            finished: AtomicUsize::new(0),
            metrics,
            trainer: Mutex::new(tx),
            sink,
        }))
    }

    fn send(&self, message: Message) {
        // the trainer only stops when serving does
        self.trainer.lock().expect("trainer lock").send(message).ok();
    }

    /// One finished request.
    pub fn record(&self, choice: &Choice, reward: f64) {
        let verdict = self.guard.lock().expect("guard lock").record(reward);
        match verdict {
            Verdict::Pending => {}
            Verdict::Accepted(..) => self.send(Message::Accept),
            Verdict::RolledBack(good, mean, good_mean) => {
                self.slot.lock().expect("policy lock").policy = good;
                self.pending.lock().expect("pending lock").clear();
                self.metrics.online_rollbacks.inc();
                self.send(Message::RollBack);
                let step = self.finished.load(Ordering::SeqCst);
                if let Some(sink) = self.sink.lock().expect("sink lock").as_mut() {
                    sink.scalar("online/rollback_reward", mean, step);
                    sink.scalar("online/good_reward", good_mean, step);
                }
            }
        }
        let finished = self.finished.fetch_add(1, Ordering::SeqCst) + 1;
        let mut pending = self.pending.lock().expect("pending lock");
        pending.push(Transition { obs: choice.obs.clone(), action: choice.index, logprob: choice.logprob, value: choice.value, reward });
        if pending.len() > self.config.max_pending {
            let extra = pending.len() - self.config.max_pending;
            pending.drain(..extra);
            self.metrics.online_dropped.inc_by(extra as u64);
        }
        let ready = pending.len() >= self.config.update_every && !self.training.load(Ordering::SeqCst) && !self.guard.lock().expect("guard lock").on_trial();
        if ready {
            self.training.store(true, Ordering::SeqCst);
            let batch = std::mem::take(&mut *pending);
            drop(pending);
            self.send(Message::Learn(batch));
        } else {
            drop(pending);
        }
        if self.config.checkpoint_every > 0 && finished % self.config.checkpoint_every == 0 && !self.checkpoint_queued.swap(true, Ordering::SeqCst) {
            self.send(Message::Checkpoint(None));
        }
    }

    /// Writes the final checkpoint (after an update in progress) and flushes TensorBoard.
    pub fn finish(&self) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        self.send(Message::Checkpoint(Some(tx)));
        let result = rx.recv().map_err(|_| "the online trainer stopped".to_string())?;
        if let Some(sink) = self.sink.lock().expect("sink lock").as_mut() {
            sink.flush();
        }
        result
    }
}

struct Trainer {
    learner: OnlineLearner,
    slot: Arc<Mutex<PolicyScheduler>>,
    guard: Arc<Mutex<Guardrail<Policy>>>,
    training: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    sink: Arc<Mutex<Option<TensorBoardSink>>>,
    plan: CheckpointPlan,
    checkpoint_queued: Arc<AtomicBool>,
}

impl Trainer {
    fn run(mut self, rx: mpsc::Receiver<Message>) {
        while let Ok(message) = rx.recv() {
            match message {
                Message::Learn(batch) => self.learn(&batch),
                Message::Accept => self.learner.accept(),
                Message::RollBack => self.learner.roll_back(),
                Message::Checkpoint(reply) => {
                    if reply.is_none() {
                        // the write below holds every request finished until now
                        self.checkpoint_queued.store(false, Ordering::SeqCst);
                    }
                    let result = self.checkpoint();
                    if let Err(e) = &result {
                        eprintln!("online checkpoint: {e}");
                    }
                    if let Some(reply) = reply {
                        reply.send(result).ok();
                    }
                }
            }
        }
    }

    fn learn(&mut self, batch: &[Transition]) {
        match self.learner.learn(batch) {
            Ok((policy, stats)) => {
                let old = std::mem::replace(&mut self.slot.lock().expect("policy lock").policy, policy);
                if !self.guard.lock().expect("guard lock").start_trial(old) {
                    self.learner.accept();
                }
                self.metrics.online_updates.inc();
                if let Some(sink) = self.sink.lock().expect("sink lock").as_mut() {
                    let step = self.learner.steps;
                    sink.scalar("online/mean_reward", stats.mean_reward, step);
                    sink.scalar("online/policy_loss", stats.policy_loss, step);
                    sink.scalar("online/value_loss", stats.value_loss, step);
                    sink.scalar("online/entropy", stats.entropy, step);
                    sink.scalar("online/approx_kl", stats.approx_kl, step);
                    sink.scalar("online/updates", self.metrics.online_updates.get() as f64, step);
                    sink.scalar("online/rollbacks", self.metrics.online_rollbacks.get() as f64, step);
                }
            }
            // a diverged update is not served; the policy serving now stays
            Err(e) => eprintln!("online update skipped: {e}"),
        }
        self.training.store(false, Ordering::SeqCst);
    }

    fn checkpoint(&self) -> Result<(), String> {
        let policy = self.slot.lock().expect("policy lock").policy.clone();
        let loaded = &self.plan.loaded;
        let sidecar = Sidecar::new(&policy, loaded.step + self.learner.steps, loaded.seed, &self.plan.env, self.plan.max_plans, &loaded.model, loaded.config.clone());
        checkpoint::save(&self.plan.dir, &policy, &sidecar, Some(self.learner.optimizer_record())).map_err(|e| e.to_string())
    }
}
