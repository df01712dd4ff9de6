//! Progress output: a spinner per step on a terminal, one plain line per step otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use crate::error::Result;

pub struct Reporter {
    tty: bool,
}

impl Reporter {
    pub fn new() -> Self {
        Reporter {
            tty: std::io::stdout().is_terminal(),
        }
    }

    /// Runs one step; `f` returns its value and a short detail for the result line.
    pub fn step<T>(&self, label: &str, f: impl FnOnce() -> Result<(T, String)>) -> Result<T> {
        let spinner = self.spinner("{spinner} {msg} {elapsed}", label);
        let start = Instant::now();
        let result = f();
        if let Some(pb) = spinner {
            pb.finish_and_clear();
        }
        let secs = start.elapsed().as_secs_f64();
        match result {
            Ok((value, detail)) => {
                let detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                };
                println!("ok   {label}{detail} ({secs:.1} s)");
                Ok(value)
            }
            Err(e) => {
                println!("FAIL {label} ({secs:.1} s)");
                Err(e)
            }
        }
    }

    /// Runs a download: on a terminal a bar with bytes and rate, otherwise one line when it starts and
    /// the step's line when it ends. `f` gets a callback for the bytes so far and returns the total.
    pub fn download(&self, label: &str, f: impl FnOnce(&mut dyn FnMut(u64)) -> Result<u64>) -> Result<()> {
        let bar = self.spinner("{spinner} {msg} {bytes} ({binary_bytes_per_sec}) {elapsed}", label);
        if bar.is_none() {
            println!("...  {label}");
        }
        let start = Instant::now();
        let result = f(&mut |bytes| {
            if let Some(pb) = &bar {
                pb.set_position(bytes);
            }
        });
        if let Some(pb) = bar {
            pb.finish_and_clear();
        }
        let secs = start.elapsed().as_secs_f64();
        match result {
            Ok(bytes) => {
                println!(
                    "ok   {label}: {} in {secs:.1} s ({}/s)",
                    HumanBytes(bytes),
                    HumanBytes((bytes as f64 / secs.max(1e-3)) as u64)
                );
                Ok(())
            }
            Err(e) => {
                println!("FAIL {label} ({secs:.1} s)");
                Err(e)
            }
        }
    }

    /// A ticking spinner showing `template` on a terminal; None elsewhere.
    fn spinner(&self, template: &str, label: &str) -> Option<ProgressBar> {
        self.tty.then(|| {
            let pb = ProgressBar::new_spinner();
            pb.set_style(ProgressStyle::with_template(template).expect("valid template"));
            pb.set_message(label.to_string());
            pb.enable_steady_tick(Duration::from_millis(100));
            pb
        })
    }

    pub fn line(&self, text: &str) {
        println!("{text}");
    }

    pub fn warn(&self, text: &str) {
        eprintln!("warning: {}", crate::error::printable(text, true));
    }
}
