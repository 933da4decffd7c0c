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
}

impl AdminRpc {
    pub const ALL: &'static [AdminRpc] = &[
        AdminRpc::RegisterDevice,
        AdminRpc::ListDevices,
        AdminRpc::GetDevice,
        AdminRpc::QueryMetrics,
    ];
}

pub fn allowed(role: Role, rpc: AdminRpc) -> bool {
    use AdminRpc::*;
    use Role::*;
    match rpc {
        RegisterDevice => matches!(role, Provisioner | Admin),
        ListDevices | GetDevice | QueryMetrics => matches!(role, Viewer | Operator | Admin),
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
        ];
        assert_eq!(table.len(), AdminRpc::ALL.len(), "every RPC needs a row");
        for (rpc, v, o, p, a) in table {
            assert_eq!(allowed(Viewer, rpc), v, "{rpc:?} viewer");
            assert_eq!(allowed(Operator, rpc), o, "{rpc:?} operator");
            assert_eq!(allowed(Provisioner, rpc), p, "{rpc:?} provisioner");
            assert_eq!(allowed(Admin, rpc), a, "{rpc:?} admin");
        }
    }
}
