//! The verify step: `rollout status`, images and pods within the verification window, with
//! live progress; a resumed verification gets what is left of the window.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tokio::sync::mpsc;

use super::{KubernetesSteps, approved_plan, failure, remaining_window, to_json};
use crate::clients::k8s;
use crate::db::rollbacks::Rollback;
use crate::domain::Step;
use crate::domain::machine::Event;
use crate::engine::StepOutcome;

impl KubernetesSteps {
    pub(super) async fn verify(&self, rollback: &Rollback) -> StepOutcome {
        let plan = match approved_plan(rollback) {
            Ok(plan) => plan,
            Err(outcome) => return outcome,
        };
        let (tx, mut rx) = mpsc::channel::<k8s::Progress>(16);
        let forward = self.progress.clone().map(|sink| {
            let rollback = rollback.clone();
            tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    sink.progress(&rollback, Step::Verify, &p.message).await;
                }
            })
        });
        let verified = self
            .executor
            .verify(&plan, self.verification_window(rollback), Some(tx))
            .await;
        if let Some(forward) = forward {
            // The sender is gone with `verify`; let the last updates through.
            let _ = forward.await;
        }
        match verified {
            Ok(v) if v.passed => {
                // When verification ended: recovery validation's window starts here.
                let mut detail = to_json(&v);
                detail["at"] = json!(Utc::now());
                StepOutcome::finished(Event::StepSucceeded, detail)
            }
            Ok(v) => StepOutcome::finished(
                Event::StepFailed {
                    reason: v.summary.clone(),
                },
                to_json(&v),
            ),
            Err(e) => failure(e),
        }
    }

    /// The verification window runs from execution; a resumed verification gets what is left.
    fn verification_window(&self, rollback: &Rollback) -> Duration {
        remaining_window(
            self.config.timeouts.verification,
            &rollback.steps["execute"]["at"],
        )
    }
}
