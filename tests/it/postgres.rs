//! PostgreSQL for the tests: a database of each test's own on the shared server at
//! 127.0.0.1:5432 (trust auth; `scripts/test` starts it if it is installed but stopped), and a
//! private server of a test's own (initdb into a temporary folder, its own port) for a test that
//! stops and starts it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::Connection as _;

/// The shared server, as its administrator.
pub(crate) const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database of the test's own on the shared server, dropped when the test ends.
pub(crate) struct Database {
    pub(crate) url: String,
    name: String,
}

impl Database {
    /// Creates `cg_<test>_<pid>`; fails loudly when the server does not answer.
    pub(crate) async fn create(test: &str) -> Self {
        let name = format!("cg_{test}_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(ADMIN_URL)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "PostgreSQL does not answer on 127.0.0.1:5432 ({error}): scripts/test starts it"
                )
            });
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let _ = admin.close().await;
        Self {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: the clean-up gets a thread and a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(ADMIN_URL).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            });
        })
        .join();
    }
}

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL server of the test's own, run as the `postgres` user (the server refuses root)
/// from a temporary folder, on `port`, with trust auth. Stopped and removed on drop.
pub(crate) struct PrivateServer {
    pub(crate) port: u16,
    home: tempfile::TempDir,
}

/// A port nobody listens on now (the system's choice).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

impl PrivateServer {
    pub(crate) fn start() -> Self {
        let mut server = Self::init(free_port());
        server.first_start();
        server
    }

    /// Starts it the first time, on another free port if the one chosen was taken meanwhile.
    fn first_start(&mut self) {
        for _ in 0..3 {
            if self.try_start().is_ok() {
                return;
            }
            self.port = free_port();
        }
        self.start_again();
    }

    /// A server that takes TLS connections only (`hostssl` in pg_hba.conf), with a certificate
    /// for 127.0.0.1 signed by a CA the test makes: the CA's PEM file.
    pub(crate) fn start_with_tls() -> (Self, PathBuf) {
        let mut server = Self::init(free_port());
        let home = server.home.path().to_path_buf();
        let home = home.as_path();
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(home)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .expect("openssl runs");
            assert!(status.success(), "openssl {args:?} failed");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=contextgate test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(home.join("san.ext"), "subjectAltName = IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ]);
        let data = server.data();
        for file in ["server.pem", "server.key"] {
            std::fs::copy(home.join(file), data.join(file)).unwrap();
        }
        assert!(
            Command::new("chown")
                .args(["postgres", "server.pem", "server.key"])
                .current_dir(&data)
                .status()
                .unwrap()
                .success()
        );
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str("\nssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n");
        std::fs::write(data.join("postgresql.conf"), conf).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        let ca = home.join("ca.pem");
        server.first_start();
        (server, ca)
    }

    fn init(port: u16) -> Self {
        let home = tempfile::TempDir::new().unwrap();
        let owner = Command::new("chown")
            .arg("postgres")
            .arg(home.path())
            .status()
            .expect("chown runs");
        assert!(
            owner.success(),
            "cannot give the folder to the postgres user"
        );
        let server = Self { port, home };
        assert!(
            server
                .as_postgres(Path::new(BIN).join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "-D"])
                .arg(server.data())
                .status()
                .unwrap()
                .success(),
            "initdb failed"
        );
        server
    }

    fn data(&self) -> PathBuf {
        self.home.path().join("data")
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn as_postgres(&self, program: PathBuf) -> Command {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(program)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        command
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        self.as_postgres(Path::new(BIN).join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(args)
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Starts it (again) and waits until it answers; the server's log when it does not start.
    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.home.path().display()
        );
        let log = self.home.path().join("log");
        if self.pg_ctl(&["-w", "-o", &options, "-l", log.to_str().unwrap(), "start"]) {
            Ok(())
        } else {
            Err(std::fs::read_to_string(&log).unwrap_or_default())
        }
    }

    /// Starts it again (on its port) and waits until it answers.
    pub(crate) fn start_again(&self) {
        if let Err(log) = self.try_start() {
            panic!(
                "the private PostgreSQL did not start on port {}: {log}",
                self.port
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the private PostgreSQL does not answer"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops it (fast: connections are closed).
    pub(crate) fn stop(&self) {
        assert!(
            self.pg_ctl(&["-w", "-m", "fast", "stop"]),
            "pg_ctl stop failed"
        );
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.pg_ctl(&["-w", "-m", "immediate", "stop"]);
    }
}
