//! Who may call which Admin RPC: one table, consulted for every call.

use vakt_proto::identity::Role;

/// Every Admin RPC. A new RPC must be added here (and to `allowed`) or the
/// service cannot authorize it — the exhaustive match makes forgetting a
/// compile error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminRpc {
    RegisterDevice,
    ListDevices,
    GetDevice,
    QueryMetrics,
    ReenrollDevice,
    RevokeDevice,
    IssueCredential,
    ListAudit,
    // alerts
    ListAlerts,
    AckAlert,
    AddSilence,
    ListSilences,
    ExpireSilence,
    WatchAlerts,
    ReloadRules,
}

impl AdminRpc {
    pub const ALL: &'static [AdminRpc] = &[
        AdminRpc::RegisterDevice,
        AdminRpc::ListDevices,
        AdminRpc::GetDevice,
        AdminRpc::QueryMetrics,
        AdminRpc::ReenrollDevice,
        AdminRpc::RevokeDevice,
        AdminRpc::IssueCredential,
        AdminRpc::ListAudit,
        AdminRpc::ListAlerts,
        AdminRpc::AckAlert,
        AdminRpc::AddSilence,
        AdminRpc::ListSilences,
        AdminRpc::ExpireSilence,
        AdminRpc::WatchAlerts,
        AdminRpc::ReloadRules,
    ];

    /// The gRPC method name (`vakt.v1.Admin/<name>`).
    pub fn method_name(self) -> &'static str {
        match self {
            AdminRpc::RegisterDevice => "RegisterDevice",
            AdminRpc::ListDevices => "ListDevices",
            AdminRpc::GetDevice => "GetDevice",
            AdminRpc::QueryMetrics => "QueryMetrics",
            AdminRpc::ReenrollDevice => "ReenrollDevice",
            AdminRpc::RevokeDevice => "RevokeDevice",
            AdminRpc::IssueCredential => "IssueCredential",
            AdminRpc::ListAudit => "ListAudit",
            AdminRpc::ListAlerts => "ListAlerts",
            AdminRpc::AckAlert => "AckAlert",
            AdminRpc::AddSilence => "AddSilence",
            AdminRpc::ListSilences => "ListSilences",
            AdminRpc::ExpireSilence => "ExpireSilence",
            AdminRpc::WatchAlerts => "WatchAlerts",
            AdminRpc::ReloadRules => "ReloadRules",
        }
    }
}

/// The table. `viewer` reads, `operator` reads, acknowledges and
/// silences alerts, `provisioner` only brings devices in, `admin` does all.
pub fn allowed(role: Role, rpc: AdminRpc) -> bool {
    use AdminRpc::*;
    use Role::*;
    match rpc {
        RegisterDevice | ReenrollDevice => matches!(role, Provisioner | Admin),
        ListDevices | GetDevice | QueryMetrics | ListAudit => {
            matches!(role, Viewer | Operator | Admin)
        }
        RevokeDevice | IssueCredential => matches!(role, Admin),
        ListAlerts | ListSilences | WatchAlerts => matches!(role, Viewer | Operator | Admin),
        AckAlert | AddSilence | ExpireSilence => matches!(role, Operator | Admin),
        ReloadRules => matches!(role, Admin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        use AdminRpc::*;
        use Role::*;
        // (rpc, viewer, operator, provisioner, admin)
        let table = [
            (RegisterDevice, false, false, true, true),
            (ListDevices, true, true, false, true),
            (GetDevice, true, true, false, true),
            (QueryMetrics, true, true, false, true),
            (ReenrollDevice, false, false, true, true),
            (RevokeDevice, false, false, false, true),
            (IssueCredential, false, false, false, true),
            (ListAudit, true, true, false, true),
            (ListAlerts, true, true, false, true),
            (AckAlert, false, true, false, true),
            (AddSilence, false, true, false, true),
            (ListSilences, true, true, false, true),
            (ExpireSilence, false, true, false, true),
            (WatchAlerts, true, true, false, true),
            (ReloadRules, false, false, false, true),
        ];
        assert_eq!(table.len(), AdminRpc::ALL.len(), "every RPC needs a row");
        for (rpc, v, o, p, a) in table {
            assert_eq!(allowed(Viewer, rpc), v, "{rpc:?} viewer");
            assert_eq!(allowed(Operator, rpc), o, "{rpc:?} operator");
            assert_eq!(allowed(Provisioner, rpc), p, "{rpc:?} provisioner");
            assert_eq!(allowed(Admin, rpc), a, "{rpc:?} admin");
        }
    }

    /// Every method the Admin service declares on the wire has a rule: a new
    /// RPC added to admin.proto without one fails here.
    #[test]
    fn every_admin_method_on_the_wire_has_a_rule() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(vakt_proto::FILE_DESCRIPTOR_SET).unwrap();
        let methods: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| &f.service)
            .filter(|s| s.name() == "Admin")
            .flat_map(|s| &s.method)
            .map(|m| m.name().to_owned())
            .collect();
        assert!(!methods.is_empty());
        for method in &methods {
            assert!(
                AdminRpc::ALL.iter().any(|rpc| rpc.method_name() == method),
                "Admin/{method} has no authorization rule"
            );
        }
        assert_eq!(methods.len(), AdminRpc::ALL.len());
    }
}
