//! The built-in rules: what a municipality gets without writing a rules file.
//! Kept as TOML (parsed by the same code as a user's file) so the defaults
//! are also the first example of the format. A file's rule with the same
//! name replaces one of these; `enabled = false` switches one off.

pub const DEFAULT_RULES: &str = r#"
evaluation_interval = "15s"

[flap]
window = "1h"
max_changes = 4

[[rule]]
name = "server-offline"
kind = "offline"
severity = "critical"
missed_intervals = 3
# A server that shut down on purpose is still a server that is down.
excuse_events = []
scope = { class = ["server", "gateway"] }
summary = "server stopped reporting"

[[rule]]
name = "device-stale"
kind = "stale"
severity = "info"
after = "30d"
summary = "device not seen for 30 days"

[[rule]]
name = "never-seen"
kind = "never_seen"
severity = "info"
after = "14d"
summary = "registered device has never reported"

[[rule]]
name = "cpu-high"
kind = "threshold"
severity = "warning"
metric = "system.cpu.utilization"
above = 0.95
clear = 0.85
for = "15m"
scope = { class = ["server", "gateway"] }

[[rule]]
name = "memory-high"
kind = "threshold"
severity = "warning"
metric = "system.memory.utilization"
above = 0.95
clear = 0.9
for = "15m"

[[rule]]
name = "filesystem-high"
kind = "threshold"
severity = "warning"
metric = "system.filesystem.utilization"
above = 0.9
clear = 0.85
for = "5m"

[[rule]]
name = "filesystem-full-soon"
kind = "filesystem_full"
severity = "warning"
within = "7d"
window = "24h"
min_points = 12
every = "10m"

[[rule]]
name = "battery-worn"
kind = "threshold"
severity = "info"
metric = "system.battery.health"
below = 0.6
clear = 0.62
summary = "battery health below 60 %"

[[rule]]
name = "hardware-changed"
kind = "inventory_change"
severity = "warning"
changes = ["memory_decreased", "disk_added", "disk_removed", "serial_changed", "product_uuid_changed"]
hold = "24h"

[[rule]]
name = "os-downgraded"
kind = "inventory_change"
severity = "warning"
changes = ["os_downgraded"]
hold = "24h"

[[rule]]
name = "clock-skew"
kind = "clock_skew"
severity = "warning"
max = "2m"

[[rule]]
name = "spool-drops"
kind = "spool_drops"
severity = "warning"
hold = "24h"
summary = "agent had to drop reports while offline"

[[rule]]
name = "identity-flag"
kind = "device_flag"
severity = "critical"
flags = ["clone-suspected", "enrollment-mismatch"]
hold = "7d"
summary = "device identity flagged (clone or enrollment mismatch)"
"#;
