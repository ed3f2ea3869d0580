//! `[report]` (schedule, sender, catch-up, templates) and `[email]` (how reports are sent).

use std::path::PathBuf;

use serde::Deserialize;

use super::Cron;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Cron with seconds, evaluated in each community's timezone.
    #[serde(default = "default_report_schedule")]
    pub schedule: Cron,
    #[serde(default = "default_from")]
    pub from: String,
    /// After downtime, at most this many missed report dates are run (the most recent ones),
    /// each marked late.
    #[serde(default = "default_catch_up")]
    pub catch_up: u32,
    /// A scheduled run that failed this many times is given up (later ones still run).
    #[serde(default = "default_run_attempts")]
    pub max_attempts: u32,
    /// Seconds before a failed scheduled run is tried again.
    #[serde(default = "default_retry_secs")]
    pub retry_secs: u64,
    /// A directory with edited report templates (`report.html.j2`, `report.txt.j2`,
    /// `i18n/<locale>.toml`); files missing there are the built-in ones.
    #[serde(default)]
    pub templates: Option<PathBuf>,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            schedule: default_report_schedule(),
            from: default_from(),
            catch_up: default_catch_up(),
            max_attempts: default_run_attempts(),
            retry_secs: default_retry_secs(),
            templates: None,
        }
    }
}

fn default_report_schedule() -> Cron {
    Cron::try_from("0 0 9 * * Mon".to_string()).expect("a valid cron expression")
}
fn default_catch_up() -> u32 {
    4
}
fn default_run_attempts() -> u32 {
    3
}
fn default_retry_secs() -> u64 {
    300
}
fn default_from() -> String {
    "Community Pulse <pulse@localhost>".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    #[serde(default)]
    pub transport: EmailTransport,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the environment variable holding the SMTP password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// PEM file of CA certificates to trust beside the public roots (a private relay's CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Send the password (AUTH) over a connection without TLS (`tls = "none"`). Off: a
    /// password is only sent encrypted; validation refuses `username` with `tls = "none"`.
    #[serde(default)]
    pub allow_plaintext_auth: bool,
    /// Seconds before an SMTP connection or command gives up.
    #[serde(default = "default_smtp_timeout")]
    pub timeout_secs: u64,
    /// Attempts per message within one run for transient failures (connection refused,
    /// timeouts, 4xx answers), with exponential backoff; a message still unsent stays queued
    /// and the next run tries again.
    #[serde(default = "default_email_attempts")]
    pub max_attempts: u32,
    /// Delay before the second attempt, doubled before each later one.
    #[serde(default = "default_email_retry_ms")]
    pub retry_initial_ms: u64,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            transport: EmailTransport::File,
            host: None,
            port: default_smtp_port(),
            tls: SmtpTls::Starttls,
            username: None,
            password_env: None,
            ca_file: None,
            allow_plaintext_auth: false,
            timeout_secs: default_smtp_timeout(),
            max_attempts: default_email_attempts(),
            retry_initial_ms: default_email_retry_ms(),
        }
    }
}

fn default_smtp_port() -> u16 {
    587
}
fn default_smtp_timeout() -> u64 {
    30
}
fn default_email_attempts() -> u32 {
    3
}
fn default_email_retry_ms() -> u64 {
    2000
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailTransport {
    #[default]
    File,
    Smtp,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    #[default]
    Starttls,
    Tls,
    None,
}
