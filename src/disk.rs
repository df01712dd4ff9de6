//! The data filesystem's use, and the watermarks that judge it: above the high one `verify` warns and
//! `status` says so; above the critical one the maintenance run makes the appliance read-only, so that a
//! full disk stops pushes cleanly while pulls go on, until space is freed.

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};

pub const DEFAULT_HIGH: u8 = 90;
pub const DEFAULT_CRITICAL: u8 = 97;

/// Below this much free space where the registry writes, pushes are about to fail: 5 % of the filesystem,
/// at least 8 MiB and at most 256 MiB. The one rule up's and verify's round trip, verify's storage check,
/// status and maintain share (a fixed 256 MiB called a 200 MiB filesystem full while pushes worked).
pub fn floor(total: u64) -> u64 {
    (total / 20).clamp(8 << 20, 256 << 20)
}

/// Below this much free, verify warns that pushes will soon fail: four floors (1 GiB on a large disk).
pub fn warn_below(total: u64) -> u64 {
    floor(total) * 4
}

/// A filesystem's size and use, as df(1) counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub total: u64,
    /// Free for an unprivileged writer (what the registry, rootless or not, may still fill).
    pub free: u64,
    /// Used: total less every free block (root's reserve counted as neither).
    pub used: u64,
}

impl Usage {
    /// The filesystem holding `path` (statvfs).
    pub fn of(path: &Path) -> Option<Self> {
        let c = CString::new(path.as_os_str().as_bytes()).ok()?;
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid path string and `s` a valid out-pointer.
        if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
            return None;
        }
        let block = s.f_frsize as u64;
        Some(Usage {
            total: s.f_blocks as u64 * block,
            free: s.f_bavail as u64 * block,
            used: (s.f_blocks as u64).saturating_sub(s.f_bfree as u64) * block,
        })
    }

    /// Percent used, rounded up as df does: used / (used + available).
    pub fn percent(&self) -> u8 {
        let usable = self.used + self.free;
        if usable == 0 {
            return 100;
        }
        (self.used * 100).div_ceil(usable).min(100) as u8
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}% used ({} of {}, {} free)",
            self.percent(),
            indicatif::HumanBytes(self.used),
            indicatif::HumanBytes(self.total),
            indicatif::HumanBytes(self.free)
        )
    }
}

/// Percentages of the data filesystem's use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub high: u8,
    pub critical: u8,
}

impl Default for Watermarks {
    fn default() -> Self {
        Watermarks {
            high: DEFAULT_HIGH,
            critical: DEFAULT_CRITICAL,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Fine,
    /// At or above the high watermark: time to free space.
    High,
    /// At or above the critical one: pushes must stop before the disk is full.
    Critical,
}

impl Watermarks {
    pub fn new(high: u8, critical: u8) -> Result<Self> {
        if !(1..=99).contains(&high) || !(1..=99).contains(&critical) || high >= critical {
            return Err(Error::usage(format!(
                "The disk watermarks must be percentages from 1 to 99 with the high one below the critical one \
                 (given {high} % and {critical} %): for example --disk-high {DEFAULT_HIGH} --disk-critical \
                 {DEFAULT_CRITICAL}."
            )));
        }
        Ok(Watermarks { high, critical })
    }

    pub fn level(&self, usage: &Usage) -> Level {
        let p = usage.percent();
        if p >= self.critical {
            Level::Critical
        } else if p >= self.high {
            Level::High
        } else {
            Level::Fine
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(used: u64, free: u64) -> Usage {
        Usage {
            total: used + free,
            free,
            used,
        }
    }

    #[test]
    fn the_floor_scales_with_the_filesystem() {
        assert_eq!(floor(200 << 20), 10 << 20, "5 % of a 200 MiB filesystem");
        assert_eq!(floor(20 << 20), 8 << 20, "never under 8 MiB");
        assert_eq!(floor(1 << 40), 256 << 20, "never over 256 MiB");
        assert_eq!(warn_below(1 << 40), 1 << 30);
        // A 200 MiB filesystem at 1 % used has room for verify's 1 MiB round trip.
        assert!(usage(2 << 20, 198 << 20).free >= (1 << 20) + floor(200 << 20));
    }

    #[test]
    fn levels_follow_the_watermarks_rounded_up_as_df_does() {
        let marks = Watermarks::default();
        assert_eq!(marks.level(&usage(50, 50)), Level::Fine);
        assert_eq!(usage(891, 109).percent(), 90);
        assert_eq!(marks.level(&usage(891, 109)), Level::High);
        assert_eq!(marks.level(&usage(97, 3)), Level::Critical);
        assert_eq!(usage(0, 0).percent(), 100);
        assert!(Usage::of(Path::new("/")).is_some_and(|u| u.total > 0));
    }

    #[test]
    fn watermarks_must_be_ordered_percentages() {
        assert!(Watermarks::new(80, 95).is_ok());
        for (h, c) in [(95, 80), (90, 90), (0, 50), (50, 100)] {
            let e = Watermarks::new(h, c).unwrap_err();
            assert!(e.message.contains("--disk-high"), "{}", e.message);
        }
    }
}
