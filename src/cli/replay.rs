//! `contextgate replay`: starts a replay job on a running gateway (`POST /v1/replays`) and
//! follows it to its end with a progress bar — count, rate, ETA, and the job's pace while it
//! goes slower than its rate — or, with `--dry-run`, prints what the window holds per type and
//! route. Ctrl-C stops following; the job goes on (cancel it with `DELETE /v1/replays/{id}`).

use std::time::Duration;

use super::{EXIT_COULD_NOT_RUN, EXIT_OK, EXIT_PROBLEMS, print};
use crate::replay::{Job, Request, Status, Survey};

/// `contextgate replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The gateway's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "CONTEXTGATE_URL")]
    pub url: String,
    /// The bearer token (the operator's, or the context's).
    #[arg(long, env = "CONTEXTGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The context whose archive is replayed.
    #[arg(long)]
    pub context: String,
    /// The window's start: RFC 3339 (2026-11-30T10:00:00Z) or a duration ago (90m).
    #[arg(long)]
    pub from: String,
    /// The window's end (default: now); the same forms.
    #[arg(long)]
    pub to: Option<String>,
    /// Only this message type (repeat for more).
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only this route.
    #[arg(long, conflicts_with = "downstream")]
    pub route: Option<String>,
    /// Only the routes into this context.
    #[arg(long)]
    pub downstream: Option<String>,
    /// Inputs per second at most, e.g. 500 or 500/s (default 500).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<u32>,
    /// Keep exactly --rate, even while the broker is loaded (by default the job slows down
    /// while the broker takes longer than usual to confirm its outputs).
    #[arg(long)]
    pub fixed_rate: bool,
    /// Send again what a route already forwarded within its dedup window.
    #[arg(long)]
    pub no_dedup: bool,
    /// Say what the window holds per type and route; start nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_rate(text: &str) -> Result<u32, String> {
    text.trim_end_matches("/s")
        .parse()
        .map_err(|_| format!("{text:?} is not a rate such as 500 or 500/s"))
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<u8> {
    let request = Request {
        context: args.context.clone(),
        from: args.from.clone(),
        to: args.to.clone(),
        types: args.types.clone(),
        route: args.route.clone(),
        downstream: args.downstream.clone(),
        rate: args.rate,
        adaptive: Some(!args.fixed_rate),
        dedup: Some(!args.no_dedup),
    };
    let client = Client::new(&args)?;
    let path = if args.dry_run {
        "/v1/replays?dry_run=true"
    } else {
        "/v1/replays"
    };
    let answer = match client
        .send(reqwest::Method::POST, path, Some(&request))
        .await
    {
        Ok(answer) => answer,
        Err(error) => {
            eprintln!("contextgate replay: {error}");
            return Ok(EXIT_COULD_NOT_RUN);
        }
    };
    if args.dry_run {
        let survey: Survey = serde_json::from_slice(&answer)?;
        print(&describe_survey(&survey));
        return Ok(EXIT_OK);
    }
    let job: Job = serde_json::from_slice(&answer)?;
    eprintln!("replay job {} started", job.id);
    follow(&client, job).await
}

/// What a dry run found, as text.
fn describe_survey(survey: &Survey) -> String {
    let mut text = format!(
        "the window holds {} archived inputs; {} would go to no route of the replay\n",
        survey.total, survey.skipped
    );
    text.push_str("per type:\n");
    for (kind, count) in &survey.by_type {
        text.push_str(&format!("  {count:>10}  {kind}\n"));
    }
    text.push_str("per route:\n");
    for (route, count) in &survey.by_route {
        text.push_str(&format!("  {count:>10}  {route}\n"));
    }
    text
}

/// Follows a job with a progress bar until it ends.
async fn follow(client: &Client, mut job: Job) -> anyhow::Result<u8> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} inputs, {per_sec}, ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let path = format!("/v1/replays/{}", job.id);
    loop {
        if let Some(window) = job.window {
            bar.set_length(window.end.saturating_sub(window.first));
            bar.set_position(job.next.saturating_sub(window.first));
        }
        if job.spec.adaptive && job.pace > 0 && job.pace < job.spec.rate {
            bar.set_message(format!("(paced at {}/s: the broker is busy)", job.pace));
        } else {
            bar.set_message("");
        }
        if job.status != Status::Running {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tokio::signal::ctrl_c() => {
                bar.abandon();
                eprintln!("stopped following; job {} goes on (DELETE {path} cancels it)", job.id);
                return Ok(EXIT_OK);
            }
        }
        match client.send::<()>(reqwest::Method::GET, &path, None).await {
            Ok(answer) => job = serde_json::from_slice(&answer)?,
            Err(error) => {
                bar.suspend(|| eprintln!("contextgate replay: {error}; trying again"));
            }
        }
    }
    bar.finish();
    let counts = &job.counts;
    print(&format!(
        "replay job {} {}: read {}, forwarded {}, duplicate {}, dropped {}, dead-lettered {}, retried {}, skipped {}\n",
        job.id,
        serde_json::to_value(job.status)?
            .as_str()
            .unwrap_or("ended"),
        counts.read,
        counts.forwarded,
        counts.duplicate,
        counts.dropped,
        counts.dead_lettered,
        counts.retried,
        counts.skipped
    ));
    if let Some(error) = &job.error {
        eprintln!("last error: {error}");
    }
    Ok(if job.status == Status::Done {
        EXIT_OK
    } else {
        EXIT_PROBLEMS
    })
}

/// The gateway's API, with the token.
struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(args: &ReplayArgs) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(crate::tls::lookup_config())
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            base: args.url.trim_end_matches('/').to_owned(),
            token: args.token.clone(),
        })
    }

    /// The answer's body on success; the problem document's detail otherwise.
    async fn send<T: serde::Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&T>,
    ) -> Result<bytes::Bytes, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(serde_json::to_vec(body).map_err(|error| error.to_string())?);
        }
        let answer = request
            .send()
            .await
            .map_err(|error| format!("cannot reach {}: {error}", self.base))?;
        let status = answer.status();
        let bytes = answer.bytes().await.map_err(|error| error.to_string())?;
        if status.is_success() {
            return Ok(bytes);
        }
        let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|problem| {
                problem
                    .get("detail")
                    .and_then(|d| d.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        Err(format!("the gateway answered {status}: {detail}"))
    }
}
