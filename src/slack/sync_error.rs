//! What the card notifier and the chart uploader share: the error of a card's sync and the
//! margin a post in flight is looked up with.

use crate::clients::slack::SlackError;
use crate::db::cards::StoreError;
use crate::db::rollbacks::RepoError;

/// A post in flight is looked up from this long before its intent was recorded: room for
/// the clocks of Postgres and Slack to disagree.
pub(crate) const LOOKUP_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Slack(#[from] SlackError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("the claim on the card of rollback #{0} could not be renewed in time; stopped")]
    ClaimNotRenewed(i64),
}
