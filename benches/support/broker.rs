//! What the benches on a broker share (`amqp`, `fleet`): quorum queues, pre-loading ~1 KB
//! persistent events with confirms, timing an output queue from its first message to its last,
//! `contextgate serve` release binaries, CPU time from `/proc/<pid>/stat`, and clean-up.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use contextgate::bus::amqp::Names;
use contextgate::registry::Registry;
use lapin::options::{
    ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection};

/// The broker the benches use: `CONTEXTGATE_BENCH_AMQP_URL`, default guest@127.0.0.1:5672.
pub(crate) fn amqp_url() -> String {
    std::env::var("CONTEXTGATE_BENCH_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn quorum() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    arguments
}

/// Declares a durable quorum queue.
pub(crate) async fn declare(channel: &Channel, queue: &str) {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            quorum(),
        )
        .await
        .unwrap();
}

/// The ready messages in `queue`.
pub(crate) async fn count(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count()
}

/// Empties `queue`; how many it held.
pub(crate) async fn purge(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_purge(queue.into(), QueuePurgeOptions::default())
        .await
        .unwrap()
}

/// The properties of input `i`: a binary-mode `shop/OrderPlaced@1`, persistent; with `keys`,
/// the CloudEvents `subject` `order-<i mod keys>` (what an ordered route on `subject` hashes).
pub(crate) fn properties(i: usize, keys: Option<usize>) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in [
        ("cloudEvents_specversion", "1.0".to_owned()),
        ("cloudEvents_id", format!("bench-{i}")),
        ("cloudEvents_source", "/shop".to_owned()),
        ("cloudEvents_type", "shop.OrderPlaced".to_owned()),
        (
            "cloudEvents_dataschema",
            "contextgate:shop/OrderPlaced@1".to_owned(),
        ),
    ] {
        headers.insert(name.into(), AMQPValue::LongString(LongString::from(value)));
    }
    if let Some(keys) = keys {
        headers.insert(
            "cloudEvents_subject".into(),
            AMQPValue::LongString(LongString::from(format!("order-{}", i % keys))),
        );
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(format!("bench-{i}").into())
        .with_headers(headers)
}

/// Publishes N messages with confirms, 5,000 in flight at a time (see [`properties`] for
/// `keys`).
pub(crate) async fn preload(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    n: usize,
    data: &[u8],
    keys: Option<usize>,
) {
    let started = Instant::now();
    let mut pending = VecDeque::new();
    for i in 0..n {
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                lapin::options::BasicPublishOptions::default(),
                data,
                properties(i, keys),
            )
            .await
            .unwrap();
        pending.push_back(confirm);
        if pending.len() >= 5_000 {
            assert!(pending.pop_front().unwrap().await.unwrap().is_ack());
        }
    }
    for confirm in pending {
        assert!(confirm.await.unwrap().is_ack());
    }
    println!(
        "  pre-loaded {n} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// When the first message reached a queue, and when the last of `n` had.
pub(crate) struct Timing {
    pub(crate) first: Instant,
    pub(crate) last: Instant,
}

impl Timing {
    pub(crate) fn seconds(&self) -> f64 {
        (self.last - self.first).as_secs_f64()
    }
}

/// Waits until `queue` holds `n` messages (polling its count every 20 ms); fails when it
/// stalls for 60 s.
pub(crate) async fn time_until(channel: &Channel, queue: &str, n: usize) -> Timing {
    while count(channel, queue).await == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        let now = count(channel, queue).await as usize;
        if now >= n {
            return Timing {
                first,
                last: Instant::now(),
            };
        }
        if now != last.0 {
            last = (now, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(60),
            "{queue} stalled at {now} of {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A channel in confirm mode.
pub(crate) async fn open(connection: &Connection) -> Channel {
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    channel
}

/// Deletes queues, each on a channel of its own (a failed delete closes its channel), 200 ms
/// apart: RabbitMQ 3.10's quorum-queue log writer can crash on a burst of deletions.
pub(crate) async fn delete_queues(connection: &Connection, queues: &[String]) {
    for queue in queues {
        let own = connection.create_channel().await.unwrap();
        if let Err(error) = own
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
        {
            println!("  could not delete {queue}: {error}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deletes what `topology::declare` declared for `registry` under `names` (the route queues,
/// an ordered route's sequencer, shards and hash exchange, the dead-letter streams, the
/// exchanges), the contexts' archives, the fleet's heartbeat exchange, and `extra` queues. No retry happened in a
/// bench, so no delay queue was declared.
pub(crate) async fn delete_topology(
    connection: &Connection,
    names: &Names,
    registry: &Registry,
    extra: &[String],
) {
    let mut queues = extra.to_vec();
    queues.extend([names.unrouted(), names.dead_letter_queue(None)]);
    let mut exchanges = vec![
        names.dead_letters(),
        names.retries(),
        names.retry(),
        names.unrouted(),
        names.fleet(),
    ];
    for route in &registry.routes {
        let name = route.name.as_str();
        if route.ordering_key.is_some() {
            queues.push(names.sequencer_queue(name));
            queues.extend((0..route.shards).map(|shard| names.shard_queue(name, shard)));
            exchanges.push(names.shard_exchange(name));
        } else {
            queues.push(names.route_queue(name));
        }
        queues.push(names.dead_letter_queue(Some(name)));
        if route.dedup.is_some() {
            queues.push(names.dedup(name));
        }
    }
    for context in registry.contexts.keys() {
        queues.extend([names.archive(context), names.archiving(context)]);
    }
    exchanges.extend(
        registry
            .contexts
            .keys()
            .flat_map(|context| [names.outbound(context), names.inbound(context)]),
    );
    delete_queues(connection, &queues).await;
    let channel = connection.create_channel().await.unwrap();
    for exchange in exchanges {
        let _ = channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
}

/// A `contextgate serve` release binary on the broker, killed when dropped.
pub(crate) struct Gateway {
    child: Child,
    /// Its HTTP API, `http://127.0.0.1:<port>`.
    pub(crate) base: String,
}

impl Gateway {
    /// Starts `serve` on `registry` with `--amqp-prefix prefix`, the given prefetch and
    /// `--instance-id instance`, and waits until it listens; its log lines (warnings and up) go to
    /// stderr.
    pub(crate) fn start(
        url: &str,
        prefix: &str,
        registry: &Path,
        prefetch: u16,
        instance: &str,
    ) -> Self {
        Self::start_on(url, prefix, registry, prefetch, instance, None)
    }

    /// [`Gateway::start`], pinned to the CPUs `cpus` (`taskset -c`) when given.
    pub(crate) fn start_on(
        url: &str,
        prefix: &str,
        registry: &Path,
        prefetch: u16,
        instance: &str,
        cpus: Option<&str>,
    ) -> Self {
        Self::start_with(url, prefix, registry, prefetch, instance, cpus, &[])
    }

    /// [`Gateway::start_on`] with more arguments to `serve` (`--data-dir DIR`, say).
    pub(crate) fn start_with(
        url: &str,
        prefix: &str,
        registry: &Path,
        prefetch: u16,
        instance: &str,
        cpus: Option<&str>,
        extra: &[&std::ffi::OsStr],
    ) -> Self {
        // `CONTEXTGATE_BENCH_GATEWAY_WRAP="valgrind --tool=callgrind"` runs it under a profiler.
        let mut child = wrapped(
            "CONTEXTGATE_BENCH_GATEWAY_WRAP",
            cpus,
            Path::new(env!("CARGO_BIN_EXE_contextgate")),
        )
        .args(["serve", "--listen", "127.0.0.1:0", "--amqp-url", url])
        .args(["--amqp-prefix", prefix, "--prefetch", &prefetch.to_string()])
        .args(["--instance-id", instance])
        .arg("--registry")
        .arg(registry)
        .args(extra)
        // `CONTEXTGATE_BENCH_GATEWAY_LOG="warn,contextgate::replay=debug"` shows more.
        .env(
            "CONTEXTGATE_LOG",
            std::env::var("CONTEXTGATE_BENCH_GATEWAY_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env_remove("CONTEXTGATE_REGISTRY_STORE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the release binary starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("the gateway printed its address")
                .unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        let instance = instance.to_owned();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("  {instance}: {line}");
            }
        });
        Self { child, base }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its peak resident set (VmHWM), KiB.
    pub(crate) fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
    }

    /// SIGTERM (it settles what it holds and hands its shards over), then waits up to 15 s
    /// for it to exit; SIGKILL past that.
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("  gateway {} did not exit on SIGTERM: killed", self.pid());
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command running `program`: pinned to the CPUs `cpus` (`taskset -c`) when given, and
/// behind the words of the environment variable `wrap` (a profiler) when it is set.
pub(crate) fn wrapped(wrap: &str, cpus: Option<&str>, program: &Path) -> Command {
    let mut words: Vec<std::ffi::OsString> = std::env::var(wrap)
        .unwrap_or_default()
        .split_whitespace()
        .map(Into::into)
        .collect();
    if let Some(cpus) = cpus {
        words.splice(0..0, ["taskset".into(), "-c".into(), cpus.into()]);
    }
    words.push(program.into());
    let mut command = Command::new(&words[0]);
    command.args(&words[1..]);
    command
}

/// The CPU time (user + system) a process has used, in seconds: fields 14 and 15 of
/// `/proc/<pid>/stat`, in clock ticks.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count the fields after its `)`.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The broker's process: `CONTEXTGATE_BENCH_BROKER_PID`, else the `beam.smp` that listens on
/// the URL's port (found through `/proc/net/tcp*` and the processes' socket descriptors, which
/// needs the right to read them), else the only `beam.smp` running. `None` when none of these
/// says.
pub(crate) fn broker_pid(url: &str) -> Option<u32> {
    if let Some(pid) = std::env::var("CONTEXTGATE_BENCH_BROKER_PID")
        .ok()
        .and_then(|pid| pid.parse().ok())
    {
        return Some(pid);
    }
    let port: u16 = url
        .split('@')
        .next_back()
        .and_then(|host| host.split('/').next())
        .and_then(|host| host.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(5672);
    let mut listening = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|address| address.rsplit_once(':'))
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            // State 0A: LISTEN.
            if local_port == Some(port)
                && fields.get(3) == Some(&"0A")
                && let Some(inode) = fields.get(9)
            {
                listening.push(format!("socket:[{inode}]"));
            }
        }
    }
    let beams: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "beam.smp")
        })
        .collect();
    let owner = beams.iter().copied().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .any(|target| listening.iter().any(|socket| target == Path::new(socket)))
    });
    owner.or_else(|| (beams.len() == 1).then(|| beams[0]))
}

/// The bench registry (its contracts and translators) with the contexts `shop`, `audit`,
/// `warehouse`, `billing` and one route, given as the body of its `[[routes]]` table, written
/// to a temporary folder.
pub(crate) fn registry_with(route: &str) -> tempfile::TempDir {
    let dir = tempfile::TempDir::new().unwrap();
    super::copy_dir(&super::bench_root(), dir.path());
    // `CONTEXTGATE_BENCH_ARCHIVE=0`: the upstream context without its archive (two broker writes
    // fewer per published event), to tell the archive's cost from the route's.
    let shop = if std::env::var("CONTEXTGATE_BENCH_ARCHIVE").as_deref() == Ok("0") {
        "[contexts.shop]\narchive = false\n"
    } else {
        "[contexts.shop]\n"
    };
    std::fs::write(
        dir.path().join("contextgate.toml"),
        format!(
            "{shop}[contexts.audit]\n[contexts.warehouse]\n[contexts.billing]\n\n[[routes]]\n{route}"
        ),
    )
    .unwrap();
    dir
}

/// Declares the gateway's topology for `registry` under `names` (as `serve` would) and a
/// quorum queue `<prefix>target` bound to the first route's downstream: the target's name and
/// the upstream's outbound exchange, where inputs are published.
pub(crate) async fn declare_with_target(
    channel: &Channel,
    names: &Names,
    registry: &Registry,
) -> (String, String) {
    contextgate::bus::amqp::topology::declare(
        channel,
        names,
        registry,
        contextgate::bus::amqp::topology::QueueSettings { delivery_limit: 20 },
    )
    .await
    .unwrap();
    let route = &registry.routes[0];
    let target = format!("{}target", names.prefix());
    declare(channel, &target).await;
    channel
        .queue_bind(
            target.as_str().into(),
            names.inbound(&route.downstream).as_str().into(),
            "#".into(),
            lapin::options::QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    (target, names.outbound(&route.upstream))
}

/// When a queue's first message came, when its `n`-th had, and the CPU time (s) each of
/// `pids` used between the two.
pub(crate) struct Sampled {
    pub(crate) timing: Timing,
    pub(crate) cpu: Vec<Option<f64>>,
}

/// [`time_until`], also reading the CPU time of `pids` when the first message is seen and when
/// the last is: the movers' CPU per message, start-up and idle waiting left out.
pub(crate) async fn time_with_cpu(
    channel: &Channel,
    queue: &str,
    n: usize,
    pids: &[u32],
) -> Sampled {
    while count(channel, queue).await == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let first = Instant::now();
    let before: Vec<Option<f64>> = pids.iter().map(|pid| cpu_seconds(*pid)).collect();
    let mut last = (0, Instant::now());
    loop {
        let now = count(channel, queue).await as usize;
        if now >= n {
            let cpu = pids
                .iter()
                .zip(before)
                .map(|(pid, before)| Some(cpu_seconds(*pid)? - before?))
                .collect();
            return Sampled {
                timing: Timing {
                    first,
                    last: Instant::now(),
                },
                cpu,
            };
        }
        if now != last.0 {
            last = (now, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(60),
            "{queue} stalled at {now} of {n}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A RabbitMQ node of the bench's own, its Erlang VM pinned to the CPUs `cpus` (`taskset -c`),
/// with the shovel and consistent-hash plugins, on `port`: a broker "on a machine of its own"
/// when the mover is pinned to the other CPUs. Stopped and removed on drop.
pub(crate) struct PinnedNode {
    pub(crate) name: String,
    pub(crate) port: u16,
    home: tempfile::TempDir,
}

const RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";

impl PinnedNode {
    pub(crate) fn start(port: u16, cpus: &str) -> Self {
        let home = tempfile::TempDir::new().unwrap();
        let name = format!("cg-bench-{}@localhost", std::process::id());
        std::fs::write(
            home.path().join("enabled_plugins"),
            "[rabbitmq_shovel,rabbitmq_consistent_hash_exchange].\n",
        )
        .unwrap();
        std::fs::write(home.path().join("rabbitmq.conf"), "").unwrap();
        let node = Self { name, port, home };
        let mut start = node.command("taskset");
        start
            .args(["-c", cpus])
            .arg(std::path::Path::new(RABBITMQ_BIN).join("rabbitmq-server"))
            .arg("-detached");
        assert!(
            start.status().is_ok_and(|status| status.success()),
            "taskset -c {cpus} rabbitmq-server -detached failed"
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        while !node.ctl(&["await_startup", "--timeout", "30"]) {
            assert!(
                Instant::now() < deadline,
                "the bench's RabbitMQ node did not start within 90 s (logs in {})",
                node.home.path().display()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        node
    }

    pub(crate) fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn command(&self, program: &str) -> Command {
        let home = self.home.path();
        let program = if program == "taskset" {
            std::path::PathBuf::from("taskset")
        } else {
            std::path::Path::new(RABBITMQ_BIN).join(program)
        };
        let mut command = Command::new(program);
        command
            .env("HOME", home)
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env(
                "RABBITMQ_DIST_PORT",
                (u32::from(self.port) + 20_000).to_string(),
            )
            .env("RABBITMQ_CONFIG_FILE", home.join("rabbitmq"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                home.join("enabled_plugins"),
            )
            .env("RABBITMQ_MNESIA_BASE", home.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", home.join("log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// Runs `rabbitmqctl -q -n <node> args…`; whether it succeeded.
    pub(crate) fn ctl(&self, args: &[&str]) -> bool {
        self.command("rabbitmqctl")
            .args(["-q", "-n", &self.name])
            .args(args)
            .status()
            .is_ok_and(|status| status.success())
    }

    /// The OS process id of the node's Erlang VM.
    pub(crate) fn os_pid(&self) -> Option<u32> {
        let output = self
            .command("rabbitmqctl")
            .args(["-q", "-n", &self.name, "eval", "os:getpid()."])
            .stdout(Stdio::piped())
            .output()
            .ok()?;
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .trim_matches('"')
            .parse()
            .ok()
    }
}

impl Drop for PinnedNode {
    fn drop(&mut self) {
        self.ctl(&["stop"]);
    }
}
