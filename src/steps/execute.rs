//! The execute step: `rollout undo`, bound to the approved plan and its deadline (through
//! Argo CD when the plan says so, `src/steps/argocd.rs`). The same guarded patch sets the
//! deploy lock ([`super::lock_for`]) and keeps the bot's own annotations, so the rolled-back
//! Deployment is locked from this instant on; whether the cluster enforces that lock is
//! checked right after and recorded for the card.

use chrono::Utc;
use serde_json::json;

use super::{KubernetesSteps, approved_plan, failure, lock_for, to_json};
use crate::clients::k8s::UndoOptions;
use crate::db::rollbacks::Rollback;
use crate::domain::machine::Event;
use crate::engine::StepOutcome;

impl KubernetesSteps {
    pub(super) async fn execute(&self, rollback: &Rollback) -> StepOutcome {
        let plan = match approved_plan(rollback) {
            Ok(plan) => plan,
            Err(outcome) => return outcome,
        };
        // The approval may act only for so long; the executor checks right before patching.
        let approved_at = rollback.approved_at.unwrap_or(rollback.expires_at);
        let deadline = chrono::Duration::from_std(self.config.timeouts.approval_max_age())
            .ok()
            .and_then(|age| approved_at.checked_add_signed(age));
        if let Some(argocd) = &plan.argocd {
            return self.execute_argocd(rollback, argocd, deadline).await;
        }
        let options = UndoOptions {
            keep_annotations: self.kept_annotations(),
            lock: Some(lock_for(rollback, Some(&plan), Utc::now())),
        };
        match self.executor.execute(&plan, deadline, &options).await {
            Ok(executed) => {
                let mut detail = to_json(&executed);
                if executed.lock.is_some() {
                    let newly_set = !executed.already_applied;
                    detail["enforcement"] =
                        to_json(&self.lock_enforcement(rollback, newly_set).await);
                }
                StepOutcome::finished(Event::StepSucceeded, detail)
            }
            // Nothing was changed: the Deployment no longer matches what was approved.
            Err(e) if e.is_refusal() => StepOutcome::finished(
                Event::StepFailed {
                    reason: format!("not executed: {e}"),
                },
                json!({ "refusal": e.to_string() }),
            ),
            Err(e) => failure(e),
        }
    }
}
