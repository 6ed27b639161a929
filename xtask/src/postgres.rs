//! A Postgres for the test run: the caller's `DATABASE_URL`, a Docker container, or a throwaway cluster.
//!
//! [`Postgres::start`] picks, in order:
//!
//! 1. `DATABASE_URL` from the environment, used as is (nothing is started or stopped);
//! 2. a `postgres:15` container, when a Docker engine answers `docker info` within a few seconds;
//! 3. a throwaway cluster made with `initdb` in a temporary directory and run with `pg_ctl`
//!    (as the `postgres` user when we run as root, because `initdb` refuses to run as root).
//!
//! Whatever it started is stopped when the [`Postgres`] value is dropped or [`Postgres::stop`]ped.
//! Drop does not run when the process dies from a signal (Ctrl-C kills xtask with the default
//! handler, and installing a handler would need `unsafe`, which the workspace forbids), so every
//! server we start is also watched by a small shell process in its own process group: it blocks
//! reading a pipe whose write end only xtask holds, and when that pipe closes without the word
//! `done` (xtask died) it runs the same cleanup.

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::cmd::{self, POLL_INTERVAL, shell_quote};

/// How long `docker info` may take before we decide there is no usable Docker engine.
const DOCKER_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a freshly started server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// The image used on the Docker path.
const DOCKER_IMAGE: &str = "postgres:15";

/// A Postgres the tests can use, and whatever must be cleaned up once they are done.
#[derive(Debug)]
pub(crate) struct Postgres {
    url: String,
    owned: Option<Owned>,
    watchdog: Option<Watchdog>,
}

/// A server this process started and therefore has to stop.
#[derive(Debug)]
enum Owned {
    Docker {
        container: String,
    },
    Cluster {
        dir: PathBuf,
        pg_ctl: PathBuf,
        run_as: RunAs,
    },
}

/// Who runs the cluster binaries: us, or the `postgres` user because we are root.
#[derive(Debug, Clone)]
enum RunAs {
    Me,
    /// `runuser` when present (no shell quoting involved), else `su`.
    PostgresUser {
        runuser: Option<PathBuf>,
    },
}

/// The shell process that cleans up if xtask dies without running [`Drop`].
#[derive(Debug)]
struct Watchdog {
    child: Child,
    stdin: ChildStdin,
}

/// Whether a cluster this process starts flushes its writes to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// `fsync=off`: the tests' cluster is thrown away, so durability is not worth waiting for.
    Throwaway,
    /// The server defaults (`fsync=on`): benchmarks measure what a real deployment pays.
    Durable,
}

impl Postgres {
    /// Finds or starts a Postgres for the tests, printing which way was taken.
    pub(crate) fn start() -> Result<Self> {
        Self::start_with(Durability::Throwaway)
    }

    /// Finds or starts a Postgres; a cluster started here has the given durability.
    pub(crate) fn start_with(durability: Durability) -> Result<Self> {
        if let Some(url) = std::env::var_os("DATABASE_URL") {
            let url = url
                .into_string()
                .map_err(|_| anyhow::anyhow!("DATABASE_URL is not valid UTF-8"))?;
            println!("postgres: using DATABASE_URL from the environment (nothing started)");
            return Ok(Self {
                url,
                owned: None,
                watchdog: None,
            });
        }
        if docker_answers() {
            match Self::start_docker() {
                Ok(pg) => return Ok(pg),
                Err(err) => {
                    eprintln!("postgres: the Docker path failed, trying a local cluster: {err:#}")
                }
            }
        } else {
            println!("postgres: no Docker engine answers `docker info`; using a throwaway cluster");
        }
        Self::start_cluster(durability)
    }

    /// The URL to export as `DATABASE_URL`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Stops whatever was started, reporting failures (dropping does the same, silently on success).
    pub(crate) fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn start_docker() -> Result<Self> {
        let port = free_port()?;
        println!("postgres: starting a `{DOCKER_IMAGE}` container on 127.0.0.1:{port}");
        let id = cmd::output(Command::new("docker").args([
            "run",
            "-d",
            "--rm",
            "-e",
            "POSTGRES_HOST_AUTH_METHOD=trust",
            "-p",
            &format!("127.0.0.1:{port}:5432"),
            DOCKER_IMAGE,
        ]))?
        .trim()
        .to_owned();
        if id.is_empty() {
            bail!("`docker run` printed no container id");
        }
        let cleanup = format!("docker stop {} >/dev/null 2>&1", shell_quote(&id));
        let mut pg = Self {
            url: url_for(port),
            owned: Some(Owned::Docker {
                container: id.clone(),
            }),
            watchdog: None,
        };
        pg.watchdog = Some(Watchdog::spawn(&cleanup)?);

        // Through docker's port forwarding a TCP connect succeeds before the server is up, so
        // readiness is asked of the server itself: from the host if `pg_isready` or `psql` is
        // installed, else from inside the container (whose init phase listens on no TCP port).
        let host_probe = ready_probe_on_host(None, port);
        wait_until_ready(READY_TIMEOUT, || match &host_probe {
            Some(probe) => probe(),
            None => cmd::probe(
                Command::new("docker").args([
                    "exec",
                    &id,
                    "pg_isready",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                ]),
                Duration::from_secs(10),
            ),
        })
        .with_context(|| format!("container {id} did not accept connections"))?;
        println!("postgres: container {id} is ready at {}", pg.url);
        Ok(pg)
    }

    fn start_cluster(durability: Durability) -> Result<Self> {
        let initdb = find_pg_binary("initdb").context(
            "no `initdb` found on PATH or under /usr/lib/postgresql/*/bin; install PostgreSQL \
             (apt-get install postgresql), start Docker, or set DATABASE_URL",
        )?;
        // Take the other binaries from the same installation, so the versions agree.
        let bin_dir = fs::canonicalize(&initdb)
            .with_context(|| format!("could not resolve {}", initdb.display()))?
            .parent()
            .map(Path::to_path_buf)
            .context("initdb has no parent directory")?;
        let pg_ctl = bin_dir.join("pg_ctl");
        if !cmd::is_executable(&pg_ctl) {
            bail!("found {} but no pg_ctl next to it", initdb.display());
        }

        let run_as = if running_as_root()? {
            if !cmd::probe(
                Command::new("id").args(["-u", "postgres"]),
                Duration::from_secs(10),
            ) {
                bail!(
                    "we run as root and initdb refuses to run as root, but there is no `postgres` \
                     user to run it as; create one (useradd --system --user-group postgres), \
                     run as another user, or set DATABASE_URL"
                );
            }
            RunAs::PostgresUser {
                runuser: cmd::which("runuser"),
            }
        } else {
            RunAs::Me
        };

        let port = free_port()?;
        let dir = make_temp_dir()?;
        println!(
            "postgres: starting a throwaway cluster in {} on 127.0.0.1:{port}{}",
            dir.display(),
            match run_as {
                RunAs::Me => "",
                RunAs::PostgresUser { .. } => " (as the `postgres` user, because we run as root)",
            }
        );
        let data = dir.join("data");
        let log = dir.join("log");
        let dir_s = path_str(&dir)?;
        let data_s = path_str(&data)?;
        let log_s = path_str(&log)?;

        // From here on the guard owns the directory, so any failure below cleans it up.
        let stop_args = vec![
            "-D".to_owned(),
            data_s.clone(),
            "-m".to_owned(),
            "immediate".to_owned(),
            "stop".to_owned(),
        ];
        let cleanup = format!(
            "{} >/dev/null 2>&1; rm -rf {}",
            run_as.shell(&pg_ctl, &stop_args),
            shell_quote(&dir_s)
        );
        let mut pg = Self {
            url: url_for(port),
            owned: Some(Owned::Cluster {
                dir: dir.clone(),
                pg_ctl: pg_ctl.clone(),
                run_as: run_as.clone(),
            }),
            watchdog: None,
        };
        pg.watchdog = Some(Watchdog::spawn(&cleanup)?);

        if let RunAs::PostgresUser { .. } = run_as {
            cmd::output(Command::new("chown").arg("postgres:").arg(&dir))
                .context("could not hand the temporary directory to the `postgres` user")?;
        }

        cmd::output(&mut run_as.command(
            &initdb,
            &[
                "-D".to_owned(),
                data_s.clone(),
                "-A".to_owned(),
                "trust".to_owned(),
                "-U".to_owned(),
                "postgres".to_owned(),
                // A fixed encoding and the C locale keep initdb independent of the host's LANG
                // (a minimal image may name a locale it has not generated).
                "-E".to_owned(),
                "UTF8".to_owned(),
                "--locale=C".to_owned(),
                // The cluster is thrown away, so durability is not worth waiting for.
                "--no-sync".to_owned(),
            ],
            &dir,
        ))
        .context("initdb failed")?;

        // max_connections is raised because parallel tests each open a connection pool.
        let fsync = match durability {
            Durability::Throwaway => "off",
            Durability::Durable => "on",
        };
        let server_opts = format!(
            "-p {port} -k {dir_s} -c listen_addresses=127.0.0.1 -c fsync={fsync} -c max_connections=300"
        );
        let started = cmd::output(&mut run_as.command(
            &pg_ctl,
            &[
                "-D".to_owned(),
                data_s,
                "-o".to_owned(),
                server_opts,
                "-l".to_owned(),
                log_s,
                "-w".to_owned(),
                "-t".to_owned(),
                READY_TIMEOUT.as_secs().to_string(),
                "start".to_owned(),
            ],
            &dir,
        ));
        if let Err(err) = started {
            return Err(err.context(format!(
                "pg_ctl start failed; server log:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            )));
        }

        let probe = ready_probe_on_host(Some(&bin_dir), port);
        wait_until_ready(READY_TIMEOUT, || match &probe {
            Some(probe) => probe(),
            // pg_ctl -w has already seen the server accept connections; a TCP connect is
            // enough to confirm it listens where DATABASE_URL points.
            None => TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok(),
        })
        .with_context(|| {
            format!(
                "the cluster did not accept connections; server log:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            )
        })?;
        println!("postgres: cluster is ready at {}", pg.url);
        Ok(pg)
    }

    /// Stops the server (if we started one), removes its files, and retires the watchdog.
    fn shutdown(&mut self) -> Result<()> {
        let result = match self.owned.take() {
            None => Ok(()),
            Some(Owned::Docker { container }) => {
                println!("postgres: stopping container {container}");
                cmd::output(Command::new("docker").args(["stop", &container])).map(drop)
            }
            Some(Owned::Cluster {
                dir,
                pg_ctl,
                run_as,
            }) => {
                println!("postgres: stopping the cluster in {}", dir.display());
                let data = dir.join("data");
                // A cluster that never got as far as initdb has nothing to stop.
                let stopped = if data.join("postmaster.pid").exists() {
                    path_str(&data).and_then(|data| {
                        cmd::output(&mut run_as.command(
                            &pg_ctl,
                            &[
                                "-D".to_owned(),
                                data,
                                "-m".to_owned(),
                                "immediate".to_owned(),
                                "stop".to_owned(),
                            ],
                            &dir,
                        ))
                        .map(drop)
                    })
                } else {
                    Ok(())
                };
                let removed = fs::remove_dir_all(&dir)
                    .with_context(|| format!("could not remove {}", dir.display()));
                stopped.and(removed)
            }
        };
        if let Some(watchdog) = self.watchdog.take() {
            // Only reached after our own cleanup, successful or not: on failure the watchdog is
            // told to stand down anyway, because its cleanup is the same and would fail alike.
            watchdog.retire();
        }
        result
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Err(err) = self.shutdown() {
            eprintln!("postgres: cleanup failed: {err:#}");
        }
    }
}

impl RunAs {
    /// A command running `program args` as this user, with `dir` as working directory (the
    /// `postgres` user may not be allowed into ours).
    fn command(&self, program: &Path, args: &[String], dir: &Path) -> Command {
        let mut cmd = match self {
            RunAs::Me => {
                let mut cmd = Command::new(program);
                cmd.args(args);
                cmd
            }
            RunAs::PostgresUser {
                runuser: Some(runuser),
            } => {
                let mut cmd = Command::new(runuser);
                cmd.args(["-u", "postgres", "--"]).arg(program).args(args);
                cmd
            }
            RunAs::PostgresUser { runuser: None } => {
                let line = std::iter::once(program.to_string_lossy().into_owned())
                    .chain(args.iter().cloned())
                    .map(|a| shell_quote(&a))
                    .collect::<Vec<_>>()
                    .join(" ");
                let mut cmd = Command::new("su");
                cmd.args(["postgres", "-s", "/bin/sh", "-c", &line]);
                cmd
            }
        };
        cmd.current_dir(dir);
        cmd
    }

    /// The same as [`RunAs::command`], as a shell command line for the watchdog.
    fn shell(&self, program: &Path, args: &[String]) -> String {
        let cmd = self.command(program, args, Path::new("/"));
        format!("cd / && {}", cmd::display(&cmd))
    }
}

impl Watchdog {
    /// Starts `sh` running `cleanup` unless it reads the line `done` before its stdin closes.
    fn spawn(cleanup: &str) -> Result<Self> {
        let script =
            format!("if IFS= read -r line && [ \"$line\" = done ]; then exit 0; fi\n{cleanup}\n");
        let mut command = Command::new("sh");
        command
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group keeps it out of reach of the terminal's Ctrl-C, which is
        // exactly when it has to outlive us.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .context("could not start the cleanup watchdog")?;
        let stdin = child
            .stdin
            .take()
            .context("the cleanup watchdog has no stdin pipe")?;
        Ok(Self { child, stdin })
    }

    /// Tells the watchdog that cleanup has been done and waits for it to exit.
    fn retire(mut self) {
        // A write error means the watchdog is already gone, which is fine.
        let _ = self.stdin.write_all(b"done\n");
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

/// The `DATABASE_URL` of a trust-auth server on localhost.
fn url_for(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("could not bind 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Whether a Docker engine answers within [`DOCKER_PROBE_TIMEOUT`].
fn docker_answers() -> bool {
    cmd::which("docker").is_some()
        && cmd::probe(Command::new("docker").arg("info"), DOCKER_PROBE_TIMEOUT)
}

/// Whether we run as root (uid 0), which initdb refuses.
fn running_as_root() -> Result<bool> {
    let uid = cmd::output(Command::new("id").arg("-u")).context("could not ask `id -u`")?;
    Ok(uid.trim() == "0")
}

/// A PostgreSQL server binary: on `PATH`, else from the newest `/usr/lib/postgresql/<N>/bin`
/// (where Debian installs them without putting them on `PATH`).
pub(crate) fn find_pg_binary(name: &str) -> Option<PathBuf> {
    if let Some(path) = cmd::which(name) {
        return Some(path);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let path = entry.path().join("bin").join(name);
            cmd::is_executable(&path).then_some((version, path))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, path)| path)
}

/// A check that a server on 127.0.0.1:`port` accepts connections, using `pg_isready` or else
/// `psql` from `bin_dir` or `PATH`; `None` if neither is installed.
fn ready_probe_on_host(bin_dir: Option<&Path>, port: u16) -> Option<Box<dyn Fn() -> bool>> {
    let find = |name: &str| {
        bin_dir
            .map(|dir| dir.join(name))
            .filter(|path| cmd::is_executable(path))
            .or_else(|| cmd::which(name))
    };
    let port = port.to_string();
    if let Some(pg_isready) = find("pg_isready") {
        return Some(Box::new(move || {
            cmd::probe(
                Command::new(&pg_isready).args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-t",
                    "2",
                ]),
                Duration::from_secs(10),
            )
        }));
    }
    let psql = find("psql")?;
    Some(Box::new(move || {
        cmd::probe(
            Command::new(&psql)
                .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d"])
                .args(["postgres", "-X", "-q", "-c", "select 1"])
                .env("PGCONNECT_TIMEOUT", "2"),
            Duration::from_secs(10),
        )
    }))
}

/// Polls `ready` until it says yes or `timeout` passes.
fn wait_until_ready(timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("not ready after {} s", timeout.as_secs());
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Creates a fresh directory under the system temp dir, readable by other users.
fn make_temp_dir() -> Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    // Short, so that the socket path `<dir>/.s.PGSQL.<port>` stays within the 107-byte limit.
    let dir = std::env::temp_dir().join(format!("xtask-pg-{}-{nanos:x}", std::process::id()));
    fs::create_dir(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    Ok(dir)
}

/// `path` as UTF-8, which the server options string needs.
fn path_str(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_owned)
        .with_context(|| format!("path {} is not valid UTF-8", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_points_at_localhost_superuser() {
        assert_eq!(url_for(5433), "postgres://postgres@127.0.0.1:5433/postgres");
    }

    #[test]
    fn free_port_is_not_zero_and_can_be_bound() {
        let port = free_port().expect("a free port");
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the port is free again");
    }

    #[test]
    fn commands_for_the_postgres_user_go_through_runuser_or_su() {
        let args = ["-D".to_owned(), "/tmp/a b".to_owned()];
        let runuser = RunAs::PostgresUser {
            runuser: Some(PathBuf::from("/usr/sbin/runuser")),
        };
        assert_eq!(
            cmd::display(&runuser.command(Path::new("/bin/pg_ctl"), &args, Path::new("/"))),
            "/usr/sbin/runuser -u postgres -- /bin/pg_ctl -D '/tmp/a b'"
        );
        let su = RunAs::PostgresUser { runuser: None };
        assert_eq!(
            cmd::display(&su.command(Path::new("/bin/pg_ctl"), &args, Path::new("/"))),
            r#"su postgres -s /bin/sh -c '/bin/pg_ctl -D '\''/tmp/a b'\'''"#
        );
    }

    #[test]
    fn watchdog_cleans_up_when_its_pipe_closes_without_done() {
        let dir = make_temp_dir().expect("temp dir");
        let marker = dir.join("cleaned");
        let cleanup = format!("touch {}", shell_quote(&path_str(&marker).expect("utf-8")));

        // Retired: the cleanup must not run.
        let watchdog = Watchdog::spawn(&cleanup).expect("spawn");
        watchdog.retire();
        assert!(!marker.exists(), "a retired watchdog ran its cleanup");

        // Abandoned, as when xtask is killed: the cleanup must run.
        let Watchdog { mut child, stdin } = Watchdog::spawn(&cleanup).expect("spawn");
        drop(stdin);
        assert!(child.wait().expect("wait").success());
        assert!(marker.exists(), "an abandoned watchdog did not clean up");
        fs::remove_dir_all(&dir).expect("remove temp dir");
    }
}
