//! The plan step: `rollout history` and the runbook's preconditions, as the plan the
//! approvers will see, or a refusal with its reason.

use serde_json::json;

use super::{KubernetesSteps, NO_DBA_CONFIGURED, target, to_json};
use crate::clients::k8s::PlanContext;
use crate::db::rollbacks::Rollback;
use crate::domain::machine::Event;
use crate::engine::StepOutcome;

impl KubernetesSteps {
    pub(super) async fn plan(&self, rollback: &Rollback) -> StepOutcome {
        let database_coupled = self
            .config
            .service(&rollback.service)
            .is_some_and(|s| s.database_coupled);
        let ctx = PlanContext {
            request_time: rollback.created_at,
            correlation_window: chrono::Duration::from_std(self.config.timeouts.correlation_window)
                .unwrap_or(chrono::Duration::MAX),
            database_coupled,
            force: rollback.force,
            kept_annotations: self.kept_annotations(),
        };
        // The native plan, or the Argo CD one when an Application manages the Deployment.
        let planned = crate::clients::k8s::argocd::client::plan(
            &self.executor,
            &target(rollback),
            rollback.requested_revision,
            &ctx,
            self.argocd_settings(rollback),
        )
        .await;
        match planned {
            // Start-up validation covers services coupled in the configuration; the
            // Deployment's annotation can still ask for a sign-off nobody may give.
            Ok(plan) if plan.requires_dba_sign_off() && !self.config.has_dba() => {
                StepOutcome::finished(
                    Event::PlanRefused {
                        reason: NO_DBA_CONFIGURED.into(),
                    },
                    json!({ "refusal": NO_DBA_CONFIGURED }),
                )
            }
            Ok(plan) => StepOutcome::Finished {
                event: Event::PlanReady {
                    fingerprint: plan.fingerprint(),
                    needs_dba: plan.requires_dba_sign_off(),
                    needs_override: plan.requires_override(),
                },
                detail: json!({
                    "fingerprint": plan.fingerprint(),
                    "approvers": self.config.approvers(plan.requires_dba_sign_off()).to_json(),
                }),
                plan: Some(to_json(&plan)),
            },
            Err(e) if e.is_refusal() => StepOutcome::finished(
                Event::PlanRefused {
                    reason: e.to_string(),
                },
                json!({ "refusal": e.to_string() }),
            ),
            Err(e) => super::argocd::argocd_failure(e, ""),
        }
    }
}
