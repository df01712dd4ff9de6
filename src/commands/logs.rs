//! `registry-up logs`: "what happened?" without knowing container names. Both containers' lines and,
//! when systemd runs the pod, the unit's own journal lines (start, stop, podman's errors), merged in time
//! order with the source's name on each line. Container lines come from the journal (by container name,
//! so a container that crashed and was replaced still shows) when systemd runs a rootful pod that logs to
//! journald, and from `podman logs` otherwise.

use std::process::Stdio;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::cli::{LogSource, LogsArgs};
use crate::error::{Error, Result};
use crate::host::HostFacts;
use crate::render::{NGINX_CONTAINER, REGISTRY_CONTAINER};
use crate::runtime::podman::Podman;
use crate::state::Service;

/// One line of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    at: OffsetDateTime,
    source: &'static str,
    text: String,
}

/// Where lines come from, and how to read a timestamp off each.
struct Source {
    label: &'static str,
    program: String,
    args: Vec<String>,
    format: Format,
}

#[derive(Clone, Copy)]
enum Format {
    /// `podman logs -t`: an RFC 3339 time, a space, the line.
    Podman,
    /// `journalctl -o json`: one JSON object per line, each an entry of one of the pod's containers,
    /// labelled by the container's name (`<pod>-registry` → `registry`).
    Containers,
    /// `journalctl -o json` of the unit: its entries but those of containers (shown by another source).
    Unit,
}

/// The label of a container name of the pod (`<pod>-registry` → `registry`).
fn container_label(name: &str) -> Option<&'static str> {
    [REGISTRY_CONTAINER, NGINX_CONTAINER]
        .into_iter()
        .find(|c| name.ends_with(&format!("-{c}")))
}

/// `--since`: a duration back from now (30s, 10m, 2h, 1h30m, 1d) or an RFC 3339 time.
pub fn parse_since(text: &str, now: OffsetDateTime) -> std::result::Result<OffsetDateTime, String> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(at);
    }
    let bad = || format!("'{text}' is neither a duration (such as 30s, 10m, 2h or 1h30m) nor an RFC 3339 time");
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|s| total.checked_add(s)).ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() || text.is_empty() {
        return Err(bad());
    }
    // Nothing was logged before 1970: a duration that reaches further back is a mistake, not "all of it".
    i64::try_from(total)
        .ok()
        .and_then(|s| now.checked_sub(time::Duration::seconds(s)))
        .filter(|at| *at >= OffsetDateTime::UNIX_EPOCH)
        .ok_or_else(|| format!("'{text}' reaches back before 1970: give a shorter duration, or a time"))
}

/// What one line of a source's output is.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// A log line: its time, the label to show and its text.
    Log(OffsetDateTime, &'static str, String),
    /// A journal entry that another source shows.
    Elsewhere,
    /// Not a log line: the program's own words (podman's "no container with name …"), kept for the error.
    Said,
}

fn parse_line(format: Format, label: &'static str, raw: &str, last: Option<OffsetDateTime>) -> Parsed {
    match format {
        Format::Podman => {
            let (stamp, rest) = raw.split_once(' ').unwrap_or((raw, ""));
            match OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339) {
                Ok(at) => Parsed::Log(at, label, rest.to_string()),
                // A line without a stamp continues the one before it; before any, it is podman speaking.
                Err(_) => match last {
                    Some(at) => Parsed::Log(at, label, raw.to_string()),
                    None => Parsed::Said,
                },
            }
        }
        Format::Containers | Format::Unit => {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(raw) else {
                return Parsed::Said;
            };
            let container = entry.get("CONTAINER_NAME").and_then(|n| n.as_str());
            let label = match (format, container) {
                (Format::Containers, Some(name)) => match container_label(name) {
                    Some(l) => l,
                    None => return Parsed::Elsewhere,
                },
                (Format::Unit, None) => label,
                _ => return Parsed::Elsewhere,
            };
            let micros = entry["__REALTIME_TIMESTAMP"]
                .as_str()
                .and_then(|m| m.parse::<i128>().ok());
            let at = micros.and_then(|m| OffsetDateTime::from_unix_timestamp_nanos(m * 1000).ok());
            match (at, entry["MESSAGE"].as_str()) {
                (Some(at), Some(text)) => Parsed::Log(at, label, text.to_string()),
                // Binary messages come as byte arrays: not worth a line.
                _ => Parsed::Elsewhere,
            }
        }
    }
}

/// `2026-11-29T14:09:15.188Z`: how lines show their time, and what `podman logs --since` takes.
fn stamp(at: OffsetDateTime) -> String {
    let (date, time) = utc(at);
    format!("{date}T{time}.{:03}Z", at.millisecond())
}

/// `2026-11-29 14:09:15 UTC`, as `journalctl --since` takes it.
fn journal_time(at: OffsetDateTime) -> String {
    let (date, time) = utc(at);
    format!("{date} {time} UTC")
}

/// The date and the time of day (to the second) in UTC.
fn utc(at: OffsetDateTime) -> (String, String) {
    let t = at.to_offset(time::UtcOffset::UTC);
    (
        format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
    )
}

fn print(lines: &mut Vec<Line>, width: usize) {
    // Stable: lines of the same instant keep the order they were written in.
    lines.sort_by_key(|l| l.at);
    let mut out = String::new();
    for l in lines.drain(..) {
        out.push_str(&format!("{:<width$} | {} {}\n", l.source, stamp(l.at), l.text));
    }
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()) {
        // The reader went away (`logs -f | head`): a follow ends there, as a process killed by SIGPIPE would.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(128 + libc::SIGPIPE);
        }
    }
}

/// `journalctl … -o json` with `matches`.
fn journal(
    user: bool,
    matches: Vec<String>,
    since: Option<OffsetDateTime>,
    follow: bool,
    label: &'static str,
    format: Format,
) -> Source {
    let mut args = Vec::new();
    if user {
        args.push("--user".to_string());
    }
    args.extend(["-o".into(), "json".into(), "--no-pager".into()]);
    if let Some(at) = since {
        args.extend(["--since".into(), journal_time(at)]);
    }
    if follow {
        // -f alone starts from the last ten entries.
        args.extend(["-f".into(), "-n".into(), "all".into()]);
    }
    args.extend(matches);
    Source {
        label,
        program: "journalctl".into(),
        args,
        format,
    }
}

fn sources(
    args: &LogsArgs,
    podman: &Podman,
    state: &crate::state::State,
    since: Option<OffsetDateTime>,
    systemd_running: bool,
) -> Vec<Source> {
    let wanted: Vec<&'static str> = [
        (LogSource::Registry, REGISTRY_CONTAINER),
        (LogSource::Nginx, NGINX_CONTAINER),
    ]
    .into_iter()
    .filter(|(kind, _)| args.container.is_none_or(|w| w == *kind))
    .map(|(_, name)| name)
    .collect();
    let systemd = state.service != Service::Direct && systemd_running;
    let mut list = Vec::new();
    if systemd && !state.rootless && podman.log_driver().as_deref() == Some("journald") {
        let matches = wanted
            .iter()
            .map(|c| format!("CONTAINER_NAME={}", crate::render::container_name(&state.pod_name, c)))
            .collect();
        list.push(journal(
            false,
            matches,
            since,
            args.follow,
            "journal",
            Format::Containers,
        ));
    } else {
        for name in &wanted {
            let mut cmd = vec!["logs".to_string(), "-t".to_string()];
            if args.follow {
                cmd.push("-f".into());
            }
            if let Some(at) = since {
                cmd.extend(["--since".into(), stamp(at)]);
            }
            cmd.push(crate::render::container_name(&state.pod_name, name));
            list.push(Source {
                label: name,
                program: podman.bin.display().to_string(),
                args: cmd,
                format: Format::Podman,
            });
        }
    }
    if systemd && args.container.is_none() {
        // The unit's own lines; container entries it may also hold are shown once, from above.
        let unit = vec!["-u".to_string(), crate::layout::unit_name(&state.pod_name)];
        list.push(journal(
            state.rootless,
            unit,
            since,
            args.follow,
            "systemd",
            Format::Unit,
        ));
    }
    list
}

/// Reads one source to its end, sending each line; returns what went wrong, if anything.
async fn read_source(source: Source, tx: mpsc::UnboundedSender<Line>) -> Option<String> {
    let mut child = match tokio::process::Command::new(&source.program)
        .args(&source.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C at the terminal reaches registry-up alone, which then ends it.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Some(format!("cannot run {} ({e})", source.program)),
    };
    // podman logs writes the container's stderr lines to its own stderr: read both.
    let mut readers = Vec::new();
    let pipes: [Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>; 2] = [
        child.stdout.take().map(|p| Box::new(p) as _),
        child.stderr.take().map(|p| Box::new(p) as _),
    ];
    for pipe in pipes.into_iter().flatten() {
        let tx = tx.clone();
        let (label, format) = (source.label, source.format);
        readers.push(tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            let mut last = None;
            let mut kept = Vec::new();
            while let Ok(Some(raw)) = lines.next_line().await {
                match parse_line(format, label, &raw, last) {
                    Parsed::Log(at, label, text) => {
                        last = Some(at);
                        let _ = tx.send(Line {
                            at,
                            source: label,
                            text,
                        });
                    }
                    Parsed::Elsewhere => {}
                    Parsed::Said => kept.push(raw.trim().to_string()),
                }
            }
            kept
        }));
    }
    let status = child.wait().await;
    let mut said = Vec::new();
    for r in readers {
        said.extend(r.await.unwrap_or_default());
    }
    said.retain(|l| !l.is_empty());
    match status {
        Ok(s) if s.success() => None,
        _ if !said.is_empty() => Some(said.join(" ")),
        Ok(s) => Some(format!("{} {} exited with {s}", source.program, source.args.join(" "))),
        Err(e) => Some(e.to_string()),
    }
}

pub fn command(args: &LogsArgs, rt: &tokio::runtime::Runtime, host: &HostFacts) -> Result<()> {
    let state = crate::state::installed(&args.appliance.config_dir)?;
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, OffsetDateTime::now_utc()))
        .transpose()
        .map_err(|e| Error::usage(format!("--since {e}: give one of those.")))?;
    let podman = Podman::find()?;
    let sources = sources(args, &podman, &state, since, host.systemd_running);
    let width = if args.container == Some(LogSource::Nginx) {
        NGINX_CONTAINER.len()
    } else {
        REGISTRY_CONTAINER.len()
    };
    let count = sources.len();
    let failures = rt.block_on(async {
        // Listening before anything starts: from here a Ctrl-C ends the follow instead of the process.
        let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|e| Error::runtime(format!("Cannot listen for Ctrl-C ({e}): run without --follow.")))?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let tasks: Vec<_> = sources
            .into_iter()
            .map(|s| tokio::spawn(read_source(s, tx.clone())))
            .collect();
        drop(tx);
        let mut pending = Vec::new();
        let collect = async {
            if args.follow {
                // Print in small batches, each sorted: the backlog comes in a burst, new lines one by one.
                // The first batch waits a little longer, for every source's backlog.
                let start = tokio::time::Instant::now() + Duration::from_millis(500);
                let mut tick = tokio::time::interval_at(start, Duration::from_millis(200));
                loop {
                    tokio::select! {
                        line = rx.recv() => match line {
                            Some(l) => pending.push(l),
                            None => break,
                        },
                        _ = tick.tick() => print(&mut pending, width),
                    }
                }
            } else {
                while let Some(l) = rx.recv().await {
                    pending.push(l);
                }
            }
            print(&mut pending, width);
        };
        tokio::select! {
            biased;
            // Ctrl-C ends a follow with success: the children go with their handles (kill_on_drop).
            _ = interrupt.recv() => return Ok(Vec::new()),
            _ = collect => {}
        }
        let mut failures = Vec::new();
        for t in tasks {
            if let Ok(Some(why)) = t.await {
                failures.push(why);
            }
        }
        Ok::<_, Error>(failures)
    })?;
    if failures.len() == count && count > 0 {
        return Err(Error::usage(format!(
            "No logs could be read for the pod {} ({}): is it running? See registry-up status, and start it with \
             registry-up up.",
            state.pod_name,
            failures.join("; ")
        )));
    }
    for why in failures {
        eprintln!("warning: {why}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let back = |s: &str| (now - parse_since(s, now).unwrap()).whole_seconds();
        assert_eq!(back("30s"), 30);
        assert_eq!(back("10m"), 600);
        assert_eq!(back("1h30m"), 5400);
        assert_eq!(back("2d"), 172_800);
        assert_eq!(
            parse_since("2026-11-29T14:00:00Z", now).unwrap(),
            OffsetDateTime::from_unix_timestamp(1_795_960_800).unwrap()
        );
        for bad in ["", "10", "m", "10x", "-5m", "1h 30m", "99999999999999999999s"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
        // A year of -9382 is not a time to give Podman.
        let e = parse_since("99999999h", now).unwrap_err();
        assert!(e.contains("before 1970"), "{e}");
    }

    #[test]
    fn lines_are_read_with_their_time() {
        let line = "2026-11-29T14:09:15.188929876+00:00 hello world";
        let Parsed::Log(at, label, text) = parse_line(Format::Podman, "nginx", line, None) else {
            panic!("not read")
        };
        assert_eq!(
            (stamp(at).as_str(), label, text.as_str()),
            ("2026-11-29T14:09:15.188Z", "nginx", "hello world")
        );
        assert_eq!(
            parse_line(Format::Podman, "nginx", "continued", Some(at)),
            Parsed::Log(at, "nginx", "continued".into())
        );
        // Podman's own error, before any log line, is not a log line.
        let error = "Error: no container with name or ID \"p-nginx\" found: no such container";
        assert_eq!(parse_line(Format::Podman, "nginx", error, None), Parsed::Said);

        let unit = r#"{"__REALTIME_TIMESTAMP":"1795961355000000","MESSAGE":"Started registry-pod.service."}"#;
        let Parsed::Log(at, label, text) = parse_line(Format::Unit, "systemd", unit, None) else {
            panic!("not read")
        };
        assert_eq!(
            (stamp(at).as_str(), label, text.as_str()),
            ("2026-11-29T14:09:15.000Z", "systemd", "Started registry-pod.service.")
        );
        let container = r#"{"__REALTIME_TIMESTAMP":"1795961355000000","MESSAGE":"x","CONTAINER_NAME":"p-registry"}"#;
        assert_eq!(parse_line(Format::Unit, "systemd", container, None), Parsed::Elsewhere);
        let Parsed::Log(_, label, _) = parse_line(Format::Containers, "journal", container, None) else {
            panic!("not read")
        };
        assert_eq!(label, "registry");
        assert_eq!(
            parse_line(Format::Unit, "systemd", "-- No entries --", None),
            Parsed::Said
        );
    }
}
