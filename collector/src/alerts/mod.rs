//! Alerting: rules → evaluation → lifecycle → notification outbox.
//!
//! The engine learns of new data from the store, never from the gRPC layer,
//! and hands every state change it wants delivered to the outbox as a
//! [`notification::Notification`]; delivery (Alertmanager, webhooks) only
//! ever reads the outbox.

pub mod notification;
pub mod notify;
