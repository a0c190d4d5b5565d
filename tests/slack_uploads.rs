//! The bot's Slack file-upload calls (src/clients/slack.rs: files.getUploadURLExternal, the
//! upload URL, files.completeUploadExternal, finding a shared file in a thread) against the
//! Slack stand-in, and the stand-in's enforcement of the documented contract
//! (crates/slack-sandbox/src/web_api/files.rs). No database or cluster needed.

use rollback_bot::clients::slack::Message;
use rollback_bot::clients::slack::SlackApi;
use serde_json::json;
use slack_sandbox::web_api::SlackStandIn;

const TOKEN: &str = "xoxb-uploads";
const CHANNEL: &str = "C0UPLOADS1";

async fn card(api: &SlackApi) -> String {
    let message = Message {
        text: "the card".into(),
        blocks: vec![],
    };
    let metadata = json!({ "event_type": "rollback_card", "event_payload": { "rollback_id": 1 } });
    api.post_message(CHANNEL, &message, None, &metadata)
        .await
        .unwrap()
}

fn since() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::TimeDelta::minutes(1)
}

#[tokio::test]
async fn a_file_is_uploaded_into_a_thread_once_and_found_there() {
    let slack = SlackStandIn::start(TOKEN).await;
    let api = SlackApi::new(&slack.api_url(), TOKEN).unwrap();
    let ts = card(&api).await;
    let bytes = b"\x89PNG\r\n\x1a\n not a whole image".to_vec();

    let (file_id, url) = api.get_upload_url("chart.png", bytes.len()).await.unwrap();
    assert!(
        api.find_file(CHANNEL, &ts, &file_id, since())
            .await
            .unwrap()
            .is_none(),
        "not in the thread before it is completed"
    );
    api.upload(&url, &bytes).await.unwrap();
    // Sending the bytes again before completion (a resumed upload) replaces them.
    api.upload(&url, &bytes).await.unwrap();
    api.complete_upload(&file_id, "Recovery", CHANNEL, &ts, "📈 the chart")
        .await
        .unwrap();

    let found = api
        .find_file(CHANNEL, &ts, &file_id, since())
        .await
        .unwrap();
    assert!(found.is_some(), "the completed file is found in the thread");
    let shared = slack.files().in_thread(&ts);
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].bytes, bytes);
    assert_eq!(shared[0].title.as_deref(), Some("Recovery"));
    assert_eq!(shared[0].comment.as_deref(), Some("📈 the chart"));
    let message = slack
        .thread(&ts)
        .into_iter()
        .find(|m| !m.files.is_empty())
        .expect("a thread message sharing the file");
    assert_eq!(message.text, "📈 the chart");
    assert_eq!(slack.violations(), Vec::<String>::new());

    // Completing the same file again is refused (and is a breach of the contract).
    let again = api
        .complete_upload(&file_id, "Recovery", CHANNEL, &ts, "📈 the chart")
        .await
        .unwrap_err();
    assert!(again.to_string().contains("file_not_found"), "{again}");
    assert_eq!(slack.files().in_thread(&ts).len(), 1);
    assert!(
        slack
            .violations()
            .iter()
            .any(|v| v.contains("completed twice")),
        "{:?}",
        slack.violations()
    );
}

#[tokio::test]
async fn the_stand_in_refuses_what_slack_refuses() {
    let slack = SlackStandIn::start(TOKEN).await;
    let api = SlackApi::new(&slack.api_url(), TOKEN).unwrap();
    let ts = card(&api).await;

    let stranger = SlackApi::new(&slack.api_url(), "xoxb-someone-else").unwrap();
    let e = stranger.get_upload_url("a.png", 10).await.unwrap_err();
    assert!(e.to_string().contains("not_authed"), "{e}");

    let e = api.get_upload_url("a.png", 0).await.unwrap_err();
    assert!(e.to_string().contains("invalid_arguments"), "{e}");

    // Bytes of another length than announced.
    let (file_id, url) = api.get_upload_url("a.png", 10).await.unwrap();
    let e = api.upload(&url, b"short").await.unwrap_err();
    assert!(e.to_string().contains("HTTP 400"), "{e}");
    // Completing before the bytes arrived.
    let e = api
        .complete_upload(&file_id, "t", CHANNEL, &ts, "c")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("file_not_found"), "{e}");
    // An unknown file id, at the upload URL and on completion.
    let unknown = url.replace(&file_id, "F0NOSUCH");
    let e = api.upload(&unknown, b"0123456789").await.unwrap_err();
    assert!(e.to_string().contains("HTTP 404"), "{e}");
    let e = api
        .complete_upload("F0NOSUCH", "t", CHANNEL, &ts, "c")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("file_not_found"), "{e}");

    api.upload(&url, b"0123456789").await.unwrap();
    // A thread that is no message of the channel.
    let e = api
        .complete_upload(&file_id, "t", CHANNEL, "1.000001", "c")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("invalid_arguments"), "{e}");
    // A channel the bot was removed from.
    slack.files().leave_channel(CHANNEL);
    let e = api
        .complete_upload(&file_id, "t", CHANNEL, &ts, "c")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not_in_channel"), "{e}");
    // An app without files:write.
    slack.files().refuse_uploads(Some("missing_scope"));
    let e = api.get_upload_url("a.png", 10).await.unwrap_err();
    assert!(e.to_string().contains("missing_scope"), "{e}");

    assert!(slack.files().shared().is_empty());
    assert_eq!(slack.files().incomplete(), vec![file_id.clone()]);
    let violations = slack.violations();
    for breach in [
        "length (a positive integer) is required",
        "got 5 bytes, files.getUploadURLExternal was told 10",
        "completed before its upload",
        "unknown file id F0NOSUCH",
        "thread_ts 1.000001 is not a message",
    ] {
        assert!(
            violations.iter().any(|v| v.contains(breach)),
            "{breach}: {violations:?}"
        );
    }
}
