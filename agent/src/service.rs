//! systemd integration (`Type=notify`, `WatchdogSec=`): readiness, watchdog
//! pings and stopping notices over `$NOTIFY_SOCKET`. Outside systemd the
//! variable is unset and every call is a no-op.

use std::time::Duration;

/// Sends one sd_notify message; failures are logged at debug only, because a
/// missing or gone notify socket must never stop the agent.
pub fn notify(state: &str) {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET")
        && let Err(e) = notify_to(&path, state)
    {
        tracing::debug!("sd_notify {state:?} failed: {e}");
    }
}

fn notify_to(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // Abstract socket namespace (Linux): systemd's default for user units.
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        }
        #[cfg(not(target_os = "linux"))]
        let _ = name;
    } else {
        socket.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

/// Half the watchdog period systemd asked for, if it asked (`WATCHDOG_USEC`,
/// and `WATCHDOG_PID` naming this process when set).
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_string_lossy() != std::process::id().to_string()
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_reaches_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("vakt-agent-test-{}", std::process::id());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            let listener = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
            notify_to(std::ffi::OsStr::new(&format!("@{name}")), "WATCHDOG=1").unwrap();
            let n = listener.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"WATCHDOG=1");
        }
    }
}
