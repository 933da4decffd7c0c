//! `vaktctl`, the ops CLI: the command tree, dispatch and exit codes.
//!
//! Exit codes: 0 ok, 1 error (one line on stderr: `error: ...`), 2 usage
//! (clap). Every command renders to a string first, so output is all or
//! nothing and the renderers stay testable without a collector.

pub mod alerts;
pub mod audit;
pub mod batch;
pub mod connect;
pub mod credentials;
pub mod devices;
pub mod lifecycle;
pub mod metrics;
pub mod output;
pub mod register;

use anyhow::{Result, anyhow};
use clap::{Parser, Subcommand};
use connect::{ConnFlags, Env};
use output::Format;
use std::io::Write;
use vakt_proto::v1;

pub const EXIT_OK: i32 = 0;
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "vaktctl",
    version,
    about = "Query and manage a Vakt fleet through its collector",
    long_about = "Query and manage a Vakt fleet through its collector.\n\n\
        Connection settings come, per setting, from the flags, else the VAKT_COLLECTOR, VAKT_CA, \
        VAKT_CERT and VAKT_KEY environment variables, else the config file (--config, VAKT_CONFIG, \
        or ~/.config/vakt/vaktctl.toml if it exists), whose relative paths are relative to the file:\n\n  \
        collector = \"https://127.0.0.1:7443\"\n  ca = \"ca.pem\"\n  cert = \"admin.pem\"\n  key = \"admin-key.pem\""
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnFlags,
    /// Output format
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pre-register a device (or a CSV batch) and print its one-time enrollment token
    #[command(after_long_help = register::REGISTER_HELP)]
    Register(register::RegisterArgs),
    /// List devices
    Devices(devices::DevicesArgs),
    /// One device: show it in detail, or give it a new enrollment token
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Query one metric of one device
    Metrics(metrics::MetricsArgs),
    /// Revoke a device: refused from its next request on, certificates denylisted
    #[command(long_about = lifecycle::REVOKE_HELP)]
    Revoke(lifecycle::RevokeArgs),
    /// Admin credentials for people and scripts
    Credentials {
        #[command(subcommand)]
        command: CredentialsCommand,
    },
    /// Who did what, when: registrations, enrollments, revocations, credentials
    Audit(audit::AuditArgs),
    /// List alerts (filters), acknowledge one, or watch changes live
    Alerts(alerts::AlertsArgs),
    /// Silence alerts by label matchers for a maintenance window
    Silence {
        #[command(subcommand)]
        command: alerts::SilenceCommand,
    },
    /// Check a rules file, or reload the collector's rules
    Rules {
        #[command(subcommand)]
        command: alerts::RulesCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Everything known about a device, including its inventory and flags
    Show {
        /// Device id, hostname or serial
        device: String,
    },
    /// A fresh one-time token for an existing device (lost key, reinstalled disk);
    /// its earlier tokens stop working
    Reenroll(lifecycle::ReenrollArgs),
}

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Issue a credential with a role; the key is generated here and never sent
    #[command(long_about = credentials::ISSUE_HELP)]
    Issue(credentials::IssueArgs),
}

/// Entry point of the binary; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" with exit code 0.
            let _ = e.print();
            return e.exit_code();
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_ERROR;
        }
    };
    match runtime.block_on(run(&cli, &connect::process_env())) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {}", connect::one_line(&format!("{e:#}")));
            EXIT_ERROR
        }
    }
}

/// Resolves the connection, runs the command and prints its output.
pub async fn run(cli: &Cli, env: &Env) -> Result<()> {
    // Checking a rules file needs no collector.
    if let Command::Rules {
        command: alerts::RulesCommand::Check { file },
    } = &cli.command
    {
        return emit(&alerts::check_rules(file)?);
    }
    let settings = connect::resolve(&cli.conn, env)?;
    let mut admin = connect::connect(&settings).await?;
    let format = cli.output;
    let text = match &cli.command {
        Command::Register(args) => {
            // A batch prints every row, then fails if any row did.
            let (text, failure) = register::run(&mut admin, args, format).await?;
            emit(&text)?;
            return failure.map_or(Ok(()), |f| Err(anyhow!(f)));
        }
        Command::Devices(args) => devices::list(&mut admin, args, format).await?,
        Command::Device {
            command: DeviceCommand::Show { device },
        } => devices::show(&mut admin, device, format).await?,
        Command::Device {
            command: DeviceCommand::Reenroll(args),
        } => lifecycle::reenroll(&mut admin, args, format).await?,
        Command::Metrics(args) => metrics::run(&mut admin, args, format).await?,
        Command::Revoke(args) => lifecycle::revoke(&mut admin, args, format).await?,
        Command::Credentials {
            command: CredentialsCommand::Issue(args),
        } => credentials::issue(&mut admin, args, &settings.collector, format).await?,
        Command::Audit(args) => audit::run(&mut admin, args, format).await?,
        Command::Alerts(args) => alerts::alerts(&mut admin, args, format).await?,
        Command::Silence { command } => alerts::silence(&mut admin, command, format).await?,
        Command::Rules {
            command: alerts::RulesCommand::Reload,
        } => alerts::reload_rules(&mut admin, format).await?,
        Command::Rules {
            command: alerts::RulesCommand::Check { .. },
        } => String::new(),
    };
    emit(&text)
}

/// Writes to stdout; a closed pipe (`vaktctl devices | head`) is not an error.
pub fn emit(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow!(
            "cannot write to standard output: {}",
            connect::io_reason(&e)
        )),
    }
}

/// `KEY=VALUE` for `--label` and `--attr`; a clap value parser, so a bad
/// pair is a usage error (exit 2) naming the flag.
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        Some(_) => Err(format!(
            "expected KEY=VALUE with a non-empty key, got {s:?}"
        )),
        None => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

pub fn attributes(pairs: &[(String, String)]) -> Vec<v1::Attribute> {
    pairs
        .iter()
        .map(|(key, value)| v1::Attribute {
            key: key.clone(),
            value: value.clone(),
        })
        .collect()
}

/// `--class`: the short names, as the wire enum's number.
pub fn class_parser() -> impl clap::builder::TypedValueParser<Value = i32> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(["laptop", "server", "tablet", "gateway", "desktop"])
        .map(|s| v1::DeviceClass::from_short_name(&s).map_or(0, |c| c as i32))
}

/// `--status`: the short names, as the wire enum's number.
pub fn status_parser() -> impl clap::builder::TypedValueParser<Value = i32> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new([
        "online",
        "offline",
        "asleep",
        "off",
        "never-seen",
        "revoked",
    ])
    .map(|s| v1::DeviceStatus::from_short_name(&s).map_or(0, |c| c as i32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vaktctl").chain(args.iter().copied()))
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn label_parsing() {
        assert_eq!(parse_kv("site=hq"), Ok(("site".into(), "hq".into())));
        assert_eq!(parse_kv("k=a=b"), Ok(("k".into(), "a=b".into())));
        assert_eq!(parse_kv("empty="), Ok(("empty".into(), String::new())));
        assert_eq!(parse_kv("kv"), Err("expected KEY=VALUE, got \"kv\"".into()));
        assert!(parse_kv("=v").is_err());

        let err = parse(&["devices", "--label", "kv"]).expect_err("bad label");
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert_eq!(err.exit_code(), EXIT_USAGE);
        let text = err.to_string();
        assert!(
            text.contains("--label") && text.contains("expected KEY=VALUE"),
            "{text}"
        );
    }

    #[test]
    fn devices_filters_map_to_the_request() {
        let cli = parse(&[
            "devices",
            "--class",
            "server",
            "--status",
            "never-seen",
            "--label",
            "a=b",
            "-o",
            "json",
        ])
        .expect("valid");
        assert_eq!(cli.output, Format::Json);
        let Command::Devices(args) = cli.command else {
            panic!("devices")
        };
        let req = args.request();
        assert_eq!(req.class, v1::DeviceClass::Server as i32);
        assert_eq!(req.status, v1::DeviceStatus::NeverSeen as i32);
        assert_eq!(req.labels.len(), 1);
        assert_eq!(
            parse(&["devices", "--status", "sleepy"])
                .expect_err("bad status")
                .kind(),
            ErrorKind::InvalidValue
        );
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let cli = parse(&["-o", "csv", "--config", "x.toml", "devices"]).expect("valid");
        assert_eq!(cli.output, Format::Csv);
        let cli =
            parse(&["devices", "--collector", "https://c:7443", "-o", "json"]).expect("valid");
        assert_eq!(cli.conn.collector.as_deref(), Some("https://c:7443"));
        assert_eq!(cli.output, Format::Json);
    }

    #[test]
    fn register_needs_exactly_a_binding_or_unbound() {
        let err = parse(&["register", "--model", "X1"]).expect_err("no binding");
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        let err = parse(&["register", "--serial", "S", "--unbound"]).expect_err("both");
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        let err = parse(&["register", "--csv", "f.csv", "--serial", "S"]).expect_err("both");
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        let err =
            parse(&["register", "--serial", "S", "--token-ttl", "soon"]).expect_err("bad ttl");
        assert_eq!(err.kind(), ErrorKind::ValueValidation);

        let cli = parse(&[
            "register",
            "--serial",
            "SN1",
            "--machine-id",
            "m1",
            "--class",
            "laptop",
            "--department",
            "IT",
            "--owner",
            "ana",
            "--label",
            "site=hq",
            "--token-ttl",
            "2d",
            "--model",
            "X1",
        ])
        .expect("valid");
        let Command::Register(args) = cli.command else {
            panic!("register")
        };
        let req = args.request();
        assert_eq!(
            (req.serial.as_str(), req.machine_id.as_str()),
            ("SN1", "m1")
        );
        assert_eq!(req.class, v1::DeviceClass::Laptop as i32);
        assert_eq!(req.token_ttl_seconds, 2 * 86_400);
        assert!(!req.unbound);
        assert!(vakt_proto::validate::register_device_request(&req).is_ok());

        let cli = parse(&["register", "--unbound"]).expect("valid");
        let Command::Register(args) = cli.command else {
            panic!("register")
        };
        assert!(args.request().unbound);
    }

    #[test]
    fn metrics_and_device_show_arguments() {
        let cli = parse(&[
            "metrics",
            "web-1",
            "system.cpu.utilization",
            "--since",
            "24h",
            "--step",
            "5m",
        ])
        .expect("valid");
        let Command::Metrics(args) = cli.command else {
            panic!("metrics")
        };
        assert_eq!(args.step, Some(std::time::Duration::from_secs(300)));
        let cli = parse(&["device", "show", "SN1"]).expect("valid");
        assert!(
            matches!(cli.command, Command::Device { command: DeviceCommand::Show { ref device } } if device == "SN1")
        );
        assert_eq!(
            parse(&["metrics", "web-1"])
                .expect_err("no metric")
                .exit_code(),
            EXIT_USAGE
        );
    }

    #[test]
    fn reenroll_revoke_and_audit_arguments() {
        let cli = parse(&["device", "reenroll", "web-1", "--token-ttl", "2d"]).expect("valid");
        let Command::Device {
            command: DeviceCommand::Reenroll(args),
        } = cli.command
        else {
            panic!("reenroll")
        };
        let req = args.request();
        assert_eq!(
            (req.device.as_str(), req.token_ttl_seconds),
            ("web-1", 2 * 86_400)
        );

        let cli = parse(&["revoke", "SN1", "--reason", "stolen", "-o", "json"]).expect("valid");
        let Command::Revoke(args) = cli.command else {
            panic!("revoke")
        };
        let req = args.request();
        assert_eq!(
            (req.device.as_str(), req.reason.as_str()),
            ("SN1", "stolen")
        );
        assert_eq!(
            parse(&["revoke"]).expect_err("no device").exit_code(),
            EXIT_USAGE
        );

        let cli = parse(&["audit", "--action", "enroll", "--limit", "5"]).expect("valid");
        let Command::Audit(args) = cli.command else {
            panic!("audit")
        };
        assert_eq!(args.limit, 5);
        assert_eq!(args.action.as_deref(), Some("enroll"));
        assert_eq!(
            parse(&["audit", "--since", "yesterday-ish"])
                .expect_err("bad since")
                .exit_code(),
            EXIT_USAGE
        );
    }

    #[test]
    fn credentials_issue_arguments() {
        let cli = parse(&[
            "credentials",
            "issue",
            "--role",
            "provisioner",
            "--name",
            "imaging-bot",
            "--lifetime",
            "90d",
        ])
        .expect("valid");
        let Command::Credentials {
            command: CredentialsCommand::Issue(args),
        } = cli.command
        else {
            panic!("issue")
        };
        assert_eq!(
            (args.role.as_str(), args.name.as_str()),
            ("provisioner", "imaging-bot")
        );
        assert_eq!(
            args.lifetime,
            Some(std::time::Duration::from_secs(90 * 86_400))
        );
        assert_eq!(args.out, None);
        let err = parse(&["credentials", "issue", "--role", "root", "--name", "x"])
            .expect_err("bad role");
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
        let err = parse(&["credentials", "issue", "--role", "admin", "--name", "../x"])
            .expect_err("bad name");
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        let err = parse(&["credentials", "issue", "--name", "x"]).expect_err("no role");
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn long_help_teaches_with_examples() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        for path in [&["register"][..], &["revoke"], &["credentials", "issue"]] {
            let mut cmd = &mut cli;
            for name in path {
                cmd = cmd.find_subcommand_mut(name).expect("subcommand exists");
            }
            let help = cmd.render_long_help().to_string();
            assert!(help.contains("Examples:\n  vaktctl "), "{path:?}:\n{help}");
        }
    }

    #[test]
    fn devices_flagged() {
        let cli = parse(&["devices", "--flagged"]).expect("valid");
        let Command::Devices(args) = cli.command else {
            panic!("devices")
        };
        assert!(args.flagged);
    }
}
