//! heist-dev-certs: a development CA and a certificate per service, in one
//! command. Keeps the CA of the output directory (so renewed leaves stay
//! trusted), makes one when there is none, and writes a certificate and key per
//! service name. Exit codes: 0 done, 1 failed (I/O, unusable CA files, nothing
//! to renew), 2 bad arguments.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use clap::Parser;
use heist_certs::{CA_CERT_FILE, CA_KEY_FILE, DevCa, Leaf, cert_file, check_name, key_file};

/// The common name of a CA this binary makes.
const CA_NAME: &str = "heist mesh development CA";

/// Makes a development CA and a TLS certificate per mesh service.
#[derive(Debug, Parser)]
#[command(
    name = "heist-dev-certs",
    version,
    about = "Makes a development CA and a TLS certificate per mesh service.",
    long_about = "Makes a development CA and a TLS certificate per mesh service.\n\n\
        The CA (ca.pem, ca-key.pem) is kept when --out already has one, so renewed \
        certificates stay trusted by whoever trusts ca.pem; it is made (valid 10 years) \
        when --out has none. Each NAME gets NAME.pem and NAME-key.pem: a certificate \
        for the DNS names NAME and localhost, the IP addresses 127.0.0.1 and ::1 and \
        the URI spiffe://heist.local/NAME, valid from an hour ago for --days days, \
        for both server and client authentication (mutual TLS). Keys are ECDSA P-256, \
        files are replaced atomically, and keys are readable by their owner only (0600).\n\n\
        Exit codes: 0 done, 1 failed (I/O, unusable CA files, no CA to renew under), \
        2 bad arguments.",
    after_help = "Examples:\n  \
        heist-dev-certs                               # run/certs: CA + oauth, tools, memory, audit, orchestrator\n  \
        heist-dev-certs --renew oauth                 # a new oauth certificate, same CA, others untouched\n  \
        heist-dev-certs --out /tmp/certs --names calculator,file_reader --days 2"
)]
struct Args {
    /// Directory for ca.pem, ca-key.pem, NAME.pem and NAME-key.pem (made if missing).
    #[arg(long, value_name = "DIR", default_value = "run/certs")]
    out: PathBuf,
    /// How many days each service certificate is valid (1 to 3650).
    #[arg(long, value_name = "DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// The services to issue certificates for, comma-separated.
    #[arg(long, value_name = "NAME,...", value_delimiter = ',',
          default_value = "oauth,tools,memory,audit,orchestrator", value_parser = parse_name)]
    names: Vec<String>,
    /// Re-issue only this service's certificate, under the CA already in --out;
    /// the other certificates are left as they are. Repeat for more; each must be
    /// one of --names.
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    renew: Vec<String>,
}

/// A `--names`/`--renew` value: a name that can name a leaf's files.
fn parse_name(text: &str) -> Result<String, String> {
    check_name(text)
        .map(|()| text.to_owned())
        .map_err(|error| error.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(unknown) = args.renew.iter().find(|name| !args.names.contains(name)) {
        let names = args.names.join(", ");
        clap::Error::raw(
            clap::error::ErrorKind::InvalidValue,
            format!(
                "--renew {unknown}: not one of the --names ({names}); \
                 add it to --names to issue a certificate for it\n"
            ),
        )
        .exit();
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Nowhere to report a failure to write to stderr.
            let _ = writeln!(std::io::stderr(), "error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Keeps or makes the CA in `--out`, then issues the leaves asked for,
/// printing each file written.
fn run(args: &Args) -> anyhow::Result<()> {
    let out = &args.out;
    let ca = open_ca(out, !args.renew.is_empty())?;
    let names = if args.renew.is_empty() {
        &args.names
    } else {
        &args.renew
    };
    let validity = Duration::from_secs(u64::from(args.days) * 24 * 3600);
    for name in names {
        let leaf = Leaf::service(name).valid_for(validity);
        let issued = ca.issue(&leaf)?;
        issued.write(out, name)?;
        say(format_args!(
            "wrote {} and {}: {}",
            out.join(cert_file(name)).display(),
            out.join(key_file(name)).display(),
            describe(&leaf),
        ));
    }
    Ok(())
}

/// The CA in `out`, loaded, or (unless `renewing`) made and written there.
fn open_ca(out: &Path, renewing: bool) -> anyhow::Result<DevCa> {
    let cert = out.join(CA_CERT_FILE);
    let key = out.join(CA_KEY_FILE);
    if cert.exists() || key.exists() {
        // Both or neither: one alone is reported by load as unreadable.
        let ca = DevCa::load(&cert, &key).context("cannot use the CA already there")?;
        say(format_args!(
            "kept CA {} ({})",
            cert.display(),
            key.display()
        ));
        return Ok(ca);
    }
    if renewing {
        bail!(
            "no CA in {} ({CA_CERT_FILE}, {CA_KEY_FILE}) to renew under; \
             run heist-dev-certs without --renew to make one",
            out.display()
        );
    }
    let ca = DevCa::new(CA_NAME)?;
    ca.write(out)?;
    say(format_args!(
        "made CA {} and {} (\"{CA_NAME}\", valid 10 years): trust {CA_CERT_FILE}",
        cert.display(),
        key.display()
    ));
    Ok(ca)
}

/// Prints `line` on stdout. The report is for people: a closed pipe (`| head`)
/// must neither stop the certificates being written nor panic, so a failure to
/// print is ignored.
fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// `DNS a, b; IP 127.0.0.1, ::1; URI spiffe://...; valid until 2026-12-31T12:00:00Z`.
fn describe(leaf: &Leaf) -> String {
    let join = |items: Vec<String>| items.join(", ");
    let mut parts = vec![format!("DNS {}", join(leaf.dns_names.clone()))];
    if !leaf.ip_addresses.is_empty() {
        let ips = leaf.ip_addresses.iter().map(ToString::to_string).collect();
        parts.push(format!("IP {}", join(ips)));
    }
    if let Some(uri) = &leaf.uri {
        parts.push(format!("URI {uri}"));
    }
    parts.push(format!("valid until {}", timestamp(leaf.not_after)));
    parts.join("; ")
}

/// `time` in RFC 3339, to the second.
fn timestamp(time: SystemTime) -> String {
    jiff::Timestamp::try_from(time)
        .and_then(|at| jiff::Timestamp::from_second(at.as_second()))
        .map_or_else(|_| format!("{time:?}"), |at| at.to_string())
}
