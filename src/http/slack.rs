//! The Slack endpoints of the HTTP server: `POST /slack/commands` and
//! `POST /slack/interactions`. The handlers live in `crate::slack::handlers`, shared with
//! the Socket Mode transport.

pub use crate::slack::handlers::routes;
