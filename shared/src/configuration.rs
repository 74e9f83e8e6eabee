//! Typed configuration from environment variables.
//!
//! Every setting is read through [`Env`], which records the name, whether it is
//! required and its default. That record is what `--list-env` prints, so the
//! list of variables a binary reads is derived from the code that reads them
//! rather than kept by hand (the compose and native-stack tests compare
//! against it). Problems are collected, not returned one by one, so a
//! misconfigured service names every bad variable in a single start-up error.

use std::fmt;
use std::str::FromStr;

/// One variable a binary reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarSpec {
    pub name: &'static str,
    pub required: bool,
    pub default: Option<String>,
    pub help: &'static str,
}

type Lookup = Box<dyn Fn(&str) -> Option<String> + Send>;

/// Reads variables and remembers what was asked for.
pub struct Env {
    lookup: Lookup,
    listing: bool,
    specs: Vec<VarSpec>,
    problems: Vec<String>,
    dev: Option<bool>,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        Self::from_fn(|name| std::env::var(name).ok())
    }

    /// Reads from a closure; tests use this instead of mutating the process env.
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + Send + 'static) -> Self {
        Self { lookup: Box::new(lookup), listing: false, specs: Vec::new(), problems: Vec::new(), dev: None }
    }

    /// Records names only: every value is its default, nothing can fail.
    pub fn listing() -> Self {
        Self { lookup: Box::new(|_| None), listing: true, specs: Vec::new(), problems: Vec::new(), dev: None }
    }

    /// A variable that must be set.
    pub fn required<T: FromStr + Default>(&mut self, name: &'static str, help: &'static str) -> T
    where
        T::Err: fmt::Display,
    {
        self.specs.push(VarSpec { name, required: true, default: None, help });
        match self.raw(name) {
            Some(raw) => self.parse(name, &raw),
            None => {
                if !self.listing {
                    self.problems.push(format!("{name} is not set ({help})"));
                }
                T::default()
            }
        }
    }

    /// A variable with a default used when it is unset or empty.
    pub fn optional<T: FromStr + Default>(&mut self, name: &'static str, default: &str, help: &'static str) -> T
    where
        T::Err: fmt::Display,
    {
        self.specs.push(VarSpec { name, required: false, default: Some(default.to_owned()), help });
        let raw = self.raw(name).unwrap_or_else(|| default.to_owned());
        self.parse(name, &raw)
    }

    /// A variable whose absence means "feature off".
    pub fn maybe<T: FromStr>(&mut self, name: &'static str, help: &'static str) -> Option<T>
    where
        T::Err: fmt::Display,
    {
        self.specs.push(VarSpec { name, required: false, default: None, help });
        let raw = self.raw(name)?;
        match raw.parse() {
            Ok(v) => Some(v),
            Err(e) => {
                self.problems.push(format!("{name}={raw:?} is invalid: {e}"));
                None
            }
        }
    }

    /// `PLATFORM_ENV=dev`: the native stack and tests. Anything else is a
    /// deployment, where example secrets are refused and an admin key is
    /// required. Read once; every binary lists it.
    pub fn is_dev(&mut self) -> bool {
        if let Some(dev) = self.dev {
            return dev;
        }
        let v: String = self.optional("PLATFORM_ENV", "production", "dev (native stack, tests: example secrets allowed) or anything else (a deployment)");
        let dev = v == "dev";
        self.dev = Some(dev);
        dev
    }

    /// Records a problem that spans several variables (e.g. a limit below a minimum).
    pub fn invalid(&mut self, problem: impl Into<String>) {
        if !self.listing {
            self.problems.push(problem.into());
        }
    }

    /// Ends reading: every problem at once, or nothing.
    pub fn finish(mut self) -> Result<Vec<VarSpec>, ConfigError> {
        if !self.is_dev() && !self.listing {
            let refused: Vec<String> = self.specs.iter().filter_map(|s| crate::secrets::refused(s.name, &self.raw(s.name)?)).collect();
            self.problems.extend(refused);
        }
        if self.problems.is_empty() {
            Ok(self.specs)
        } else {
            Err(ConfigError { problems: self.problems })
        }
    }

    fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    fn parse<T: FromStr + Default>(&mut self, name: &'static str, raw: &str) -> T
    where
        T::Err: fmt::Display,
    {
        match raw.trim().parse() {
            Ok(v) => v,
            Err(e) => {
                if !self.listing {
                    self.problems.push(format!("{name}={raw:?} is invalid: {e}"));
                }
                T::default()
            }
        }
    }
}

/// Start-up configuration failure naming every offending variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// A string that never prints: connection URLs carry passwords.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// A byte count written as `2GiB`, `64MiB`, `512KiB` or a plain number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| format!("expected a size such as 2GiB, got {s:?}"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" | "K" => 1 << 10,
            "MiB" | "M" => 1 << 20,
            "GiB" | "G" => 1 << 30,
            other => return Err(format!("unknown unit {other:?} (use B, KiB, MiB or GiB)")),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(|| format!("{s:?} overflows"))
    }
}

/// A duration written as `30s`, `5m`, `250ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seconds(pub std::time::Duration);

impl FromStr for Seconds {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (num, mult_ms) = if let Some(n) = s.strip_suffix("ms") {
            (n, 1)
        } else if let Some(n) = s.strip_suffix('s') {
            (n, 1000)
        } else if let Some(n) = s.strip_suffix('m') {
            (n, 60_000)
        } else if let Some(n) = s.strip_suffix('h') {
            (n, 3_600_000)
        } else {
            (s, 1000)
        };
        let n: u64 = num.parse().map_err(|_| format!("expected a duration such as 30s, got {s:?}"))?;
        Ok(Seconds(std::time::Duration::from_millis(n * mult_ms)))
    }
}

/// Prints the variables a binary reads, one per line, for `--list-env`.
pub fn print_specs(specs: &[VarSpec]) {
    for s in specs {
        let kind = if s.required { "required".to_owned() } else { format!("default={}", s.default.clone().unwrap_or_default()) };
        println!("{}\t{}\t{}", s.name, kind, s.help);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_invalid_variables_are_all_named_at_once() {
        let mut env = Env::from_fn(|n| (n == "SIZE").then(|| "12 parsecs".to_owned()));
        let _: String = env.required("DATABASE_URL", "PostgreSQL URL");
        let _: ByteSize = env.optional("SIZE", "1GiB", "a size");
        let err = env.finish().unwrap_err().to_string();
        assert!(err.contains("DATABASE_URL is not set"), "{err}");
        assert!(err.contains("SIZE=\"12 parsecs\" is invalid"), "{err}");
    }

    #[test]
    fn listing_mode_records_names_without_failing() {
        let mut env = Env::listing();
        let _: String = env.required("A", "a");
        let _: u32 = env.optional("B", "7", "b");
        let specs = env.finish().unwrap();
        // PLATFORM_ENV is read by `finish` itself, so every binary lists it.
        assert_eq!(specs.iter().map(|s| s.name).collect::<Vec<_>>(), ["A", "B", "PLATFORM_ENV"]);
        assert!(specs[0].required && !specs[1].required);
    }

    #[test]
    fn byte_sizes_and_durations_parse_with_units() {
        assert_eq!("2GiB".parse::<ByteSize>().unwrap().0, 2 << 30);
        assert_eq!("64MiB".parse::<ByteSize>().unwrap().0, 64 << 20);
        assert_eq!("100".parse::<ByteSize>().unwrap().0, 100);
        assert!("5TB".parse::<ByteSize>().is_err());
        assert_eq!("250ms".parse::<Seconds>().unwrap().0.as_millis(), 250);
        assert_eq!("2m".parse::<Seconds>().unwrap().0.as_secs(), 120);
    }

    #[test]
    fn secrets_never_print() {
        let s: Secret = "postgres://u:hunter2@h/db".parse().unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
