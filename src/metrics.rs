//! Prometheus metrics: their names, the registry, and the small HTTP endpoint serving them.
//!
//! What runs leave behind is read from the state file on every scrape (plus the maintenance
//! flag), so the endpoint tells the truth after a restart or a reboot, for runs the daemon made
//! and for runs `staging-refresh run` made beside it, and a maintenance flag left by a crash
//! shows. Only the next scheduled run is set by the daemon itself. Tables and columns in
//! labels are shown as the email shows them ([`Recipients`]: hashed when they look personal).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{
    Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::media::MediaReport;
use crate::report::redact::Recipients;
use crate::report::{Outcome, RunKind, RunReport};
use crate::shutdown::CancellationToken;
use crate::staging::maintenance;
use crate::state::{State, StateFile};

pub const BUILD_INFO: &str = "staging_refresh_build_info";
pub const RUNS_TOTAL: &str = "staging_refresh_runs_total";
pub const EMAIL_FAILURES_TOTAL: &str = "staging_refresh_email_failures_total";
pub const NOTIFICATIONS_TOTAL: &str = "staging_refresh_notifications_total";
pub const LAST_RUN_WARNINGS: &str = "staging_refresh_last_run_warnings";
pub const LAST_RUN_TIMESTAMP: &str = "staging_refresh_last_run_timestamp_seconds";
pub const LAST_RUN_OUTCOME: &str = "staging_refresh_last_run_outcome";
pub const LAST_RUN_DURATION: &str = "staging_refresh_last_run_duration_seconds";
pub const LAST_SUCCESS_TIMESTAMP: &str = "staging_refresh_last_success_timestamp_seconds";
pub const PHASE_DURATION: &str = "staging_refresh_phase_duration_seconds";
pub const MAINTENANCE_WINDOW: &str = "staging_refresh_maintenance_window_seconds";
pub const SNAPSHOT_TAKEN_TIMESTAMP: &str = "staging_refresh_snapshot_taken_timestamp_seconds";
pub const SNAPSHOT_SIZE: &str = "staging_refresh_snapshot_size_bytes";
pub const RESTORED_BYTES: &str = "staging_refresh_restored_bytes";
pub const RESTORED_ROWS: &str = "staging_refresh_restored_rows";
pub const ANONYMIZED_ROWS: &str = "staging_refresh_anonymized_rows";
pub const VERIFICATION_FAILURES: &str = "staging_refresh_verification_failures";
pub const PII_FINDINGS: &str = "staging_refresh_pii_findings";
pub const MASKED_VALUES_TOTAL: &str = "staging_refresh_masked_values_total";
pub const MEDIA_OBJECTS_TOTAL: &str = "staging_refresh_media_objects_total";
pub const MEDIA_COPIED_BYTES_TOTAL: &str = "staging_refresh_media_copied_bytes_total";
pub const MEDIA_RETRIES_TOTAL: &str = "staging_refresh_media_retries_total";
pub const RUNNING: &str = "staging_refresh_running";
pub const RUN_STARTED_TIMESTAMP: &str = "staging_refresh_run_started_timestamp_seconds";
pub const MAINTENANCE: &str = "staging_refresh_maintenance";
pub const MAINTENANCE_SINCE_TIMESTAMP: &str = "staging_refresh_maintenance_since_timestamp_seconds";
pub const NEXT_RUN_TIMESTAMP: &str = "staging_refresh_next_run_timestamp_seconds";
pub const UNCLASSIFIED_COLUMNS: &str = "staging_refresh_unclassified_columns";

/// Every metric the endpoint serves.
pub struct Metrics {
    registry: Registry,
    runs: IntCounterVec,
    email_failures: IntCounter,
    notifications: IntCounterVec,
    last_run: Gauge,
    last_run_warnings: IntGauge,
    last_run_outcome: IntGaugeVec,
    last_run_duration: Gauge,
    last_success: Gauge,
    phase_duration: GaugeVec,
    maintenance_window: Gauge,
    snapshot_taken: Gauge,
    snapshot_size: IntGauge,
    restored_bytes: IntGauge,
    restored_rows: IntGaugeVec,
    anonymized_rows: IntGaugeVec,
    verification_failures: IntGauge,
    pii_findings: IntGaugeVec,
    running: IntGauge,
    run_started: Gauge,
    maintenance: IntGauge,
    maintenance_since: Gauge,
    next_run: Gauge,
    unclassified_columns: IntGauge,
    media_objects: IntCounterVec,
    masked_values: IntCounterVec,
    media_copied_bytes: IntCounter,
    media_retries: IntCounter,
}

/// Builds and registers one metric: `metric!(registry => Kind, NAME, "help")`, or for a
/// labelled one `metric!(registry => KindVec, NAME, ["label", ...], "help")`.
macro_rules! metric {
    ($registry:expr => $kind:ty, $name:expr, $help:expr) => {
        register($registry, <$kind>::new($name, $help))
    };
    ($registry:expr => $kind:ty, $name:expr, $labels:expr, $help:expr) => {
        register($registry, <$kind>::new(Opts::new($name, $help), &$labels))
    };
}

/// Registers a freshly built metric and returns it.
fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: Result<M, prometheus::Error>,
) -> M {
    let metric = metric.expect("metric names and labels are valid");
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric is registered once");
    metric
}

/// Every kind and outcome of a run, as labels.
fn runs() -> impl Iterator<Item = (String, String)> {
    RunKind::ALL.into_iter().flat_map(|kind| {
        Outcome::ALL
            .into_iter()
            .map(move |outcome| (kind.to_string(), outcome.to_string()))
    })
}

/// Every channel and result of a notification, as labels.
fn notifications() -> impl Iterator<Item = (&'static str, &'static str)> {
    ["email", "slack", "mattermost", "teams", "json"]
        .into_iter()
        .flat_map(|channel| ["sent", "failed"].map(|result| (channel, result)))
}

fn timestamp(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        metric!(r => IntGaugeVec, BUILD_INFO, ["version"],
            "Always 1; the version label says which build runs.")
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
        let metrics = Metrics {
            runs: metric!(r => IntCounterVec, RUNS_TOTAL, ["kind", "outcome"],
                "Finished runs by kind (refresh, rollback) and outcome."),
            email_failures: metric!(r => IntCounter, EMAIL_FAILURES_TOTAL,
                "Summary emails that could not be sent (also in the notifications counter)."),
            notifications: metric!(r => IntCounterVec, NOTIFICATIONS_TOTAL,
                ["channel", "result"],
                "Notifications by channel (email, slack, mattermost, teams, json) and result \
                 (sent, failed)."),
            last_run_warnings: metric!(r => IntGauge, LAST_RUN_WARNINGS,
                "Warnings of the last run (0 for a clean one): PII let through, media objects \
                 that failed, a recovered earlier run."),
            last_run: metric!(r => Gauge, LAST_RUN_TIMESTAMP, "When the last refresh finished."),
            last_run_outcome: metric!(r => IntGaugeVec, LAST_RUN_OUTCOME, ["outcome"],
                "1 for the last refresh's outcome, 0 for the others."),
            last_run_duration: metric!(r => Gauge, LAST_RUN_DURATION,
                "How long the last refresh took."),
            last_success: metric!(r => Gauge, LAST_SUCCESS_TIMESTAMP,
                "When the last successful refresh finished."),
            phase_duration: metric!(r => GaugeVec, PHASE_DURATION, ["phase"],
                "How long each phase of the last refresh took."),
            maintenance_window: metric!(r => Gauge, MAINTENANCE_WINDOW,
                "How long staging was in maintenance during the last cutover."),
            snapshot_taken: metric!(r => Gauge, SNAPSHOT_TAKEN_TIMESTAMP,
                "When the production snapshot staging serves was taken."),
            snapshot_size: metric!(r => IntGauge, SNAPSHOT_SIZE,
                "Compressed size of the snapshot staging serves."),
            restored_bytes: metric!(r => IntGauge, RESTORED_BYTES,
                "Decompressed SQL bytes the last refresh restored."),
            restored_rows: metric!(r => IntGaugeVec, RESTORED_ROWS, ["table"],
                "Rows the last refresh restored, per table."),
            anonymized_rows: metric!(r => IntGaugeVec, ANONYMIZED_ROWS, ["table"],
                "Rows the last refresh anonymized, per table."),
            verification_failures: metric!(r => IntGauge, VERIFICATION_FAILURES,
                "Anonymization checks that failed in the last refresh."),
            pii_findings: metric!(r => IntGaugeVec, PII_FINDINGS,
                ["table", "column", "kind", "found_by"],
                "Possible unmasked PII the last refresh's scan found: matching values per table, \
                 column and kind."),
            running: metric!(r => IntGauge, RUNNING, "1 while a refresh runs."),
            run_started: metric!(r => Gauge, RUN_STARTED_TIMESTAMP,
                "When the refresh running now started; 0 when none runs."),
            maintenance: metric!(r => IntGauge, MAINTENANCE,
                "1 while the maintenance flag is raised."),
            maintenance_since: metric!(r => Gauge, MAINTENANCE_SINCE_TIMESTAMP,
                "When the maintenance flag was raised; 0 when it is not."),
            next_run: metric!(r => Gauge, NEXT_RUN_TIMESTAMP,
                "When the next scheduled refresh starts; 0 when none is."),
            unclassified_columns: metric!(r => IntGauge, UNCLASSIFIED_COLUMNS,
                "Columns of the newest snapshot no masking rule classifies, as the daemon's \
                 watch last found them: the next refresh fails on them."),
            media_objects: metric!(r => IntCounterVec, MEDIA_OBJECTS_TOTAL, ["action"],
                "Media objects handled by the mirror, by action."),
            masked_values: metric!(r => IntCounterVec, MASKED_VALUES_TOTAL, ["table", "column"],
                "Values masked in the restore stream, by table and column."),
            media_copied_bytes: metric!(r => IntCounter, MEDIA_COPIED_BYTES_TOTAL,
                "Bytes the media mirror copied."),
            media_retries: metric!(r => IntCounter, MEDIA_RETRIES_TOTAL,
                "Media requests retried after a temporary error."),
            registry,
        };
        // Every outcome and media action exists from the start, so rate() and increase() see
        // the first one.
        for (kind, outcome) in runs() {
            metrics.runs.with_label_values(&[&kind, &outcome]);
        }
        for (channel, result) in notifications() {
            metrics.notifications.with_label_values(&[channel, result]);
        }
        for outcome in Outcome::ALL {
            metrics
                .last_run_outcome
                .with_label_values(&[&outcome.to_string()]);
        }
        for action in MediaReport::ACTIONS {
            metrics.media_objects.with_label_values(&[action]);
        }
        metrics
    }

    /// Sets every value a run leaves behind from the state file's contents, names shown as
    /// `names` shows them.
    pub fn restore(&self, state: &State, names: &Recipients) {
        for kind in RunKind::ALL {
            for outcome in Outcome::ALL {
                let runs = self
                    .runs
                    .with_label_values(&[&kind.to_string(), &outcome.to_string()]);
                runs.reset();
                runs.inc_by(state.totals.runs(kind, outcome));
            }
        }
        for (channel, result) in notifications() {
            let counter = self.notifications.with_label_values(&[channel, result]);
            counter.reset();
            counter.inc_by(state.totals.notifications(channel, result));
        }
        self.email_failures.reset();
        self.email_failures.inc_by(state.totals.email_failures);
        for action in MediaReport::ACTIONS {
            let objects = self.media_objects.with_label_values(&[action]);
            objects.reset();
            objects.inc_by(state.totals.media_objects(action));
        }
        self.masked_values.reset();
        for (table, columns) in &state.totals.masked_values {
            for (column, n) in columns {
                self.masked_values
                    .with_label_values(&[&names.name(table), &names.name(column)])
                    .inc_by(*n);
            }
        }
        for (counter, total) in [
            (&self.media_copied_bytes, state.totals.media_copied_bytes),
            (&self.media_retries, state.totals.media_retries),
        ] {
            counter.reset();
            counter.inc_by(total);
        }

        if let Some(last) = &state.last {
            self.last_run(last, names);
        }
        if let Some(success) = &state.last_success {
            self.last_success
                .set(timestamp(success.finished_at.unwrap_or(success.started_at)));
        }
        if let Some(snapshot) = state.serving() {
            self.snapshot_taken.set(timestamp(snapshot.taken_at));
            self.snapshot_size.set(snapshot.size as i64);
        }
        // The last cutover, even when the last run stopped before one.
        if let Some(seconds) = [&state.last, &state.last_success]
            .into_iter()
            .flatten()
            .find_map(|r| r.maintenance_seconds)
        {
            self.maintenance_window.set(seconds);
        }

        self.next_run
            .set(state.next_run.map(timestamp).unwrap_or(0.0));
        self.unclassified_columns.set(
            state
                .drift
                .as_ref()
                .map_or(0, |d| d.unclassified.len() as i64),
        );

        // A run recorded by a process that is gone ended abruptly: nothing runs.
        let current = state.current.as_ref().filter(|c| process_alive(c.pid));
        self.running.set(current.is_some() as i64);
        self.run_started
            .set(current.map(|c| timestamp(c.started_at)).unwrap_or(0.0));
    }

    fn last_run(&self, report: &RunReport, names: &Recipients) {
        let finished = report.finished_at.unwrap_or(report.started_at);
        self.last_run.set(timestamp(finished));
        self.last_run_duration
            .set((finished - report.started_at).num_milliseconds() as f64 / 1000.0);
        self.last_run_warnings.set(report.warnings().len() as i64);
        for outcome in Outcome::ALL {
            self.last_run_outcome
                .with_label_values(&[&outcome.to_string()])
                .set((outcome == report.outcome) as i64);
        }
        self.phase_duration.reset();
        for p in &report.phases {
            self.phase_duration
                .with_label_values(&[&p.phase.to_string()])
                .set(p.seconds);
        }
        self.restored_bytes.set(report.bytes_restored as i64);
        for (gauge, rows) in [
            (&self.restored_rows, &report.rows_restored),
            (&self.anonymized_rows, &report.rows_anonymized),
        ] {
            gauge.reset();
            for (table, n) in rows {
                gauge
                    .with_label_values(&[&names.name(table)])
                    .set(*n as i64);
            }
        }
        self.verification_failures
            .set(report.verification.iter().filter(|v| !v.ok).count() as i64);
        self.pii_findings.reset();
        for f in &report.pii_findings {
            self.pii_findings
                .with_label_values(&[
                    &names.name(&f.table),
                    &names.name(&f.column),
                    &f.kind,
                    &f.by,
                ])
                .add(f.count as i64);
        }
    }

    /// The maintenance flag: raised since when, or lowered.
    pub fn set_maintenance(&self, since: Option<DateTime<Utc>>) {
        self.maintenance.set(since.is_some() as i64);
        self.maintenance_since
            .set(since.map(timestamp).unwrap_or(0.0));
    }

    /// The Prometheus text exposition of every metric.
    pub fn text(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding into memory does not fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn process_alive(pid: u32) -> bool {
    // Signal 0 checks existence; EPERM means it exists under another user.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Where the endpoint reads what runs leave behind: the state file and the maintenance flag.
#[derive(Debug, Clone)]
pub struct Sources {
    state: StateFile,
    flag_file: PathBuf,
    names: Recipients,
}

impl Sources {
    pub fn of(config: &Config) -> Sources {
        Sources {
            state: StateFile::in_dir(&config.daemon.state_dir),
            flag_file: config.flag_file(),
            names: Recipients::new(config),
        }
    }

    /// Brings `metrics` up to date; an unreadable state file keeps the values it had.
    pub fn update(&self, metrics: &Metrics) {
        match self.state.read() {
            Ok(state) => metrics.restore(&state, &self.names),
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read the state file"),
        }
        let since = match maintenance::read(&self.flag_file) {
            None => None,
            Some(Ok(flag)) => Some(flag.since),
            // Unreadable counts as raised; its file's age says since when.
            Some(Err(_)) => Some(
                std::fs::metadata(&self.flag_file)
                    .and_then(|m| m.modified())
                    .map(DateTime::<Utc>::from)
                    .unwrap_or_else(|_| Utc::now()),
            ),
        };
        metrics.set_maintenance(since);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("metrics.listen {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// The running endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// The address it listens on (the port chosen when `listen` asked for port 0).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Endpoint {
    /// Waits until the endpoint has stopped accepting (after shutdown).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Listens on `listen` and answers `GET /metrics` (the text format, refreshed from `sources`
/// on each request) and `GET /healthz` until shutdown. Fails at once when it cannot listen.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    sources: Sources,
    shutdown: CancellationToken,
) -> Result<Endpoint, ListenError> {
    let error = |source| ListenError {
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(error)?;
    let addr = listener.local_addr().map_err(error)?;
    tracing::info!(%addr, "metrics endpoint listening");
    let task = tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics endpoint: accept failed");
                        continue;
                    }
                },
                () = shutdown.cancelled() => return,
            };
            let (metrics, sources) = (metrics.clone(), sources.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let response = respond(&request, &metrics, &sources);
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(error = %e, "metrics endpoint: connection ended");
                }
            });
        }
    });
    Ok(Endpoint { addr, task })
}

fn respond(
    request: &Request<Incoming>,
    metrics: &Metrics,
    sources: &Sources,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    const PLAIN: &str = "text/plain; charset=utf-8";
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "GET only\n".into());
    }
    match request.uri().path() {
        "/metrics" => {
            sources.update(metrics);
            reply(StatusCode::OK, prometheus::TEXT_FORMAT, metrics.text())
        }
        "/healthz" => reply(StatusCode::OK, PLAIN, "ok\n".into()),
        _ => reply(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: try /metrics or /healthz\n".into(),
        ),
    }
}
