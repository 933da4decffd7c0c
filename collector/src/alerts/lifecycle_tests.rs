use super::*;

const POLICY: Policy = Policy {
    flap_window_ms: 10_000,
    flap_max_changes: 3,
};

fn alert(for_ms: i64) -> Alert {
    let mut a = Alert::new("f".into(), "r".into(), "d".into(), 0);
    a.for_ms = for_ms;
    a
}

#[test]
fn pending_then_firing_after_for_then_resolved() {
    let mut a = alert(2_000);
    assert!(a.observe(true, 1_000, &POLICY));
    assert_eq!(a.state, State::Pending);
    assert_eq!(a.reconcile(false), None, "pending is not notified");
    a.observe(true, 2_000, &POLICY);
    assert_eq!(a.state, State::Pending);
    assert!(a.advance(3_000, &POLICY), "the tick promotes it");
    assert_eq!(a.state, State::Firing);
    assert_eq!(a.reconcile(false), Some(Notice::Firing));
    assert_eq!(a.reconcile(false), None, "told once");
    a.observe(false, 4_000, &POLICY);
    assert_eq!(a.state, State::Resolved);
    assert_eq!(a.reconcile(false), Some(Notice::Resolved));
    assert_eq!(a.reconcile(false), None);
}

#[test]
fn a_pending_alert_that_clears_is_forgotten() {
    let mut a = alert(5_000);
    a.observe(true, 0, &POLICY);
    a.observe(false, 1_000, &POLICY);
    assert_eq!(a.state, State::Resolved);
    assert!(a.never_fired());
    assert_eq!(a.reconcile(false), None);
}

#[test]
fn ack_expiry_renotifies_while_firing() {
    let mut a = alert(0);
    a.observe(true, 0, &POLICY);
    assert_eq!(a.reconcile(false), Some(Notice::Firing));
    a.ack = Some(Ack {
        author: "ops".into(),
        comment: "on it".into(),
        at_ms: 10,
        until_ms: 1_000,
    });
    assert!(a.acknowledged(500));
    assert_eq!(a.shown_state(500), "acknowledged");
    assert!(!a.advance(500, &POLICY));
    assert!(a.advance(1_000, &POLICY));
    assert!(a.ack.is_none());
    assert_eq!(a.reconcile(false), Some(Notice::Renotify));
    assert_eq!(a.reconcile(false), None);
}

#[test]
fn silenced_alerts_notify_when_the_silence_ends_and_always_resolve() {
    let mut a = alert(0);
    a.observe(true, 0, &POLICY);
    assert_eq!(a.reconcile(true), None);
    assert_eq!(a.reconcile(false), Some(Notice::Firing));
    a.observe(false, 100, &POLICY);
    assert_eq!(
        a.reconcile(true),
        Some(Notice::Resolved),
        "whoever heard it fire hears it end"
    );

    let mut quiet = alert(0);
    quiet.observe(true, 0, &POLICY);
    assert_eq!(quiet.reconcile(true), None);
    quiet.observe(false, 100, &POLICY);
    assert_eq!(quiet.reconcile(true), None, "never heard, never resolved");
}

#[test]
fn flapping_notifies_once_then_settles() {
    let mut a = alert(0);
    let mut notices = Vec::new();
    for i in 0..8 {
        a.observe(i % 2 == 0, i * 500, &POLICY);
        notices.extend(a.reconcile(false));
    }
    assert!(a.flapping);
    assert_eq!(
        notices,
        vec![
            Notice::Firing,
            Notice::Resolved,
            Notice::Firing,
            Notice::Flapping
        ]
    );
    // Ends resolved; stable for a whole window: flapping ends, receivers
    // learn the final state.
    assert_eq!(a.state, State::Resolved);
    assert!(!a.advance(5_000, &POLICY) || a.flapping);
    assert!(a.advance(3_500 + 10_000, &POLICY));
    assert!(!a.flapping);
    assert_eq!(a.reconcile(false), Some(Notice::Resolved));
}

#[test]
fn a_new_value_alone_is_not_a_change_to_write() {
    let before = Alert::new("a".into(), "r".into(), "d".into(), 0);
    let mut after = before.clone();
    after.value = 0.97;
    assert!(!after.changed_beyond_value(&before));
    after.summary = "new text".into();
    assert!(after.changed_beyond_value(&before));
    let mut fired = before.clone();
    fired.value = 0.97;
    assert!(fired.observe(true, 1_000, &POLICY_FOR_VALUE_TEST));
    assert!(fired.changed_beyond_value(&before));
}

const POLICY_FOR_VALUE_TEST: Policy = Policy {
    flap_window_ms: 3_600_000,
    flap_max_changes: 4,
};
