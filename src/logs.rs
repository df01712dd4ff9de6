//! `registry-up logs`: "what happened?" without knowing container names. Both containers' lines (from
//! `podman logs`, which reads whichever log driver Podman uses, journald included) and, when systemd runs
//! the pod, the unit's own journal lines (start, stop, podman's errors), merged in time order with the
//! source's name on each line.

use std::process::Stdio;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::cli::{LogSource, LogsArgs};
use crate::error::{Error, Result};
use crate::render::{Service, NGINX_CONTAINER, REGISTRY_CONTAINER};
use crate::runtime::podman::Podman;

/// One line of one source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
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
    /// `journalctl -o json`: one JSON object per line.
    Journal,
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
    i64::try_from(total)
        .ok()
        .and_then(|s| now.checked_sub(time::Duration::seconds(s)))
        .ok_or_else(bad)
}

fn parse_line(format: Format, raw: &str, last: OffsetDateTime) -> Option<(OffsetDateTime, String)> {
    match format {
        Format::Podman => {
            let (stamp, rest) = raw.split_once(' ').unwrap_or((raw, ""));
            match OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339) {
                Ok(at) => Some((at, rest.to_string())),
                // A line without a stamp continues the one before it.
                Err(_) => Some((last, raw.to_string())),
            }
        }
        Format::Journal => {
            let entry: serde_json::Value = serde_json::from_str(raw).ok()?;
            // Container lines are read from podman; the journal adds what systemd and podman said.
            if entry.get("CONTAINER_NAME").is_some() {
                return None;
            }
            let micros: i128 = entry["__REALTIME_TIMESTAMP"].as_str()?.parse().ok()?;
            let at = OffsetDateTime::from_unix_timestamp_nanos(micros * 1000).ok()?;
            let text = entry["MESSAGE"].as_str()?.to_string();
            Some((at, text))
        }
    }
}

fn stamp(at: OffsetDateTime) -> String {
    let t = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn print(lines: &mut Vec<Line>, width: usize) {
    lines.sort();
    let mut out = String::new();
    for l in lines.drain(..) {
        out.push_str(&format!("{:<width$} | {} {}\n", l.source, stamp(l.at), l.text));
    }
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

fn sources(
    args: &LogsArgs,
    podman: &Podman,
    state: &crate::render::State,
    since: Option<OffsetDateTime>,
) -> Vec<Source> {
    let mut list = Vec::new();
    let wanted = |c: LogSource| args.container.is_none_or(|w| w == c);
    for (kind, name) in [
        (LogSource::Registry, REGISTRY_CONTAINER),
        (LogSource::Nginx, NGINX_CONTAINER),
    ] {
        if !wanted(kind) {
            continue;
        }
        let mut cmd = vec!["logs".to_string(), "-t".to_string()];
        if args.follow {
            cmd.push("-f".into());
        }
        if let Some(at) = since {
            cmd.extend(["--since".into(), stamp(at)]);
        }
        cmd.push(format!("{}-{name}", state.pod_name));
        list.push(Source {
            label: name,
            program: podman.bin.display().to_string(),
            args: cmd,
            format: Format::Podman,
        });
    }
    if args.container.is_none() && state.service != Service::Direct && crate::sys::systemd_running() {
        let mut cmd = Vec::new();
        if state.rootless {
            cmd.push("--user".to_string());
        }
        cmd.extend(["-u".into(), format!("{}.service", state.pod_name)]);
        cmd.extend(["-o".into(), "json".into(), "--no-pager".into()]);
        if let Some(at) = since {
            let t = at.to_offset(time::UtcOffset::UTC);
            cmd.extend([
                "--since".into(),
                format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                ),
            ]);
        }
        if args.follow {
            cmd.push("-f".into());
        }
        list.push(Source {
            label: "systemd",
            program: "journalctl".into(),
            args: cmd,
            format: Format::Journal,
        });
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
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Some(format!("cannot run {} ({e})", source.program)),
    };
    // podman logs writes the container's stderr lines to its own stderr: read both.
    let mut readers = Vec::new();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        let (label, format) = (source.label, source.format);
        readers.push(tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            let mut last = OffsetDateTime::UNIX_EPOCH;
            let mut kept = Vec::new();
            while let Ok(Some(raw)) = lines.next_line().await {
                match parse_line(format, &raw, last) {
                    Some((at, text)) => {
                        last = at;
                        let _ = tx.send(Line {
                            at,
                            source: label,
                            text,
                        });
                    }
                    None => kept.push(raw),
                }
            }
            kept
        }));
    }
    let status = child.wait().await;
    let mut unparsed = Vec::new();
    for r in readers {
        unparsed.extend(r.await.unwrap_or_default());
    }
    match status {
        Ok(s) if s.success() => None,
        _ if matches!(source.format, Format::Podman) && !unparsed.is_empty() => Some(unparsed.join(" ")),
        Ok(s) => Some(format!("{} {} exited with {s}", source.program, source.args.join(" "))),
        Err(e) => Some(e.to_string()),
    }
}

pub fn command(args: &LogsArgs, rt: &tokio::runtime::Runtime) -> Result<()> {
    let state = crate::settings::read_state(&args.config_dir)?.ok_or_else(|| {
        Error::usage(format!(
            "No appliance is installed here ({} is missing): run registry-up up first, or give --config-dir.",
            args.config_dir.join(crate::render::STATE).display()
        ))
    })?;
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, OffsetDateTime::now_utc()))
        .transpose()
        .map_err(|e| Error::usage(format!("--since {e}.")))?;
    let podman = Podman::find()?;
    let sources = sources(args, &podman, &state, since);
    let width = sources.iter().map(|s| s.label.len()).max().unwrap_or(8);
    let count = sources.len();
    let failures = rt.block_on(async {
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
                let mut tick = tokio::time::interval(Duration::from_millis(200));
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
            _ = collect => {}
            // Ctrl-C ends a follow: the children go with their handles (kill_on_drop).
            _ = tokio::signal::ctrl_c() => return Vec::new(),
        }
        let mut failures = Vec::new();
        for t in tasks {
            if let Ok(Some(why)) = t.await {
                failures.push(why);
            }
        }
        failures
    });
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
    }

    #[test]
    fn lines_are_read_with_their_time() {
        let epoch = OffsetDateTime::UNIX_EPOCH;
        let (at, text) = parse_line(Format::Podman, "2026-11-29T14:09:15.188929876+00:00 hello world", epoch).unwrap();
        assert_eq!(
            (stamp(at).as_str(), text.as_str()),
            ("2026-11-29T14:09:15.188Z", "hello world")
        );
        let (at2, text) = parse_line(Format::Podman, "continued", at).unwrap();
        assert_eq!((at2, text.as_str()), (at, "continued"));
        let journal = r#"{"__REALTIME_TIMESTAMP":"1795961355000000","MESSAGE":"Started registry-pod.service."}"#;
        let (at, text) = parse_line(Format::Journal, journal, epoch).unwrap();
        assert_eq!(
            (stamp(at).as_str(), text.as_str()),
            ("2026-11-29T14:09:15.000Z", "Started registry-pod.service.")
        );
        let container = r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":"x","CONTAINER_NAME":"p-registry"}"#;
        assert_eq!(parse_line(Format::Journal, container, epoch), None);
    }
}
