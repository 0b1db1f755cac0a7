use super::*;

fn alert(event: Event) -> Alert {
    Alert {
        event,
        subject: "<b>\"rig\"</b>".into(),
        message: "worker \"<b>\" is down\n".into(),
        at: 1_800_000_000,
        hashrate: Some(f64::NAN),
    }
}

fn sink(events: Option<Vec<Event>>) -> Sink {
    let url: Webhook = "http://127.0.0.1:9/hook".parse().unwrap();
    Sink { webhook: Some(url), format: None, mqtt: None, events }
}

#[test]
fn a_full_queue_drops_and_counts_and_never_waits() {
    let mut outbox = Outbox::default();
    let (rx, counts) = outbox.add(sink(None));
    let (only_blocks, block_counts) = outbox.add(sink(Some(vec![Event::BlockFound])));
    for _ in 0..QUEUE_ALERTS + 5 {
        outbox.raise(alert(Event::WorkerDown));
    }
    assert_eq!(rx.len(), QUEUE_ALERTS);
    assert_eq!(counts.dropped.get(), 5);
    assert_eq!(only_blocks.len(), 0, "a sink gets only the events it wants");
    assert_eq!(block_counts.dropped.get(), 0);
    drop(rx);
    outbox.raise(alert(Event::WorkerDown));
    assert_eq!(counts.failed.get(), 1, "a sink whose task is gone fails the alert");
}

#[test]
fn the_json_body_escapes_what_miners_chose() {
    let mut buf = [0u8; MAX_BODY_BYTES];
    let n = json(&alert(Event::WorkerDown), "gw", &mut buf).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
    assert_eq!(v["event"], "worker_down");
    assert_eq!(v["gateway"], "gw");
    assert_eq!(v["subject"], "<b>\"rig\"</b>");
    assert_eq!(v["message"], "worker \"<b>\" is down\n");
    assert_eq!(v["at"], 1_800_000_000u64);
    assert!(v["hashrate"].is_null(), "not finite is null");
}

#[test]
fn retries_back_off_and_stop_growing() {
    assert_eq!(retry_wait(1), FIRST_RETRY_WAIT);
    assert_eq!(retry_wait(2), FIRST_RETRY_WAIT * 2);
    assert_eq!(retry_wait(100), MAX_RETRY_WAIT);
}
