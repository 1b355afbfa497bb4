//! Test support: a workspace in a temp dir, the real binary, and the built-in emulator running on
//! loopback in the test process.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use nanobatch::mock::{MockConfig, MockServer, Stats};

/// The emulator on its own runtime thread, for tests that drive the binary.
pub struct Emulator {
    server: Option<MockServer>,
    runtime: tokio::runtime::Runtime,
}

impl Emulator {
    pub fn start(config: MockConfig) -> Emulator {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let server = runtime.block_on(MockServer::start(config, 0)).unwrap();
        Emulator { server: Some(server), runtime }
    }

    pub fn url(&self) -> String {
        self.server.as_ref().unwrap().url()
    }

    pub fn stats(&self) -> Stats {
        self.server.as_ref().unwrap().stats()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.stop());
        }
    }
}

/// A temporary directory with a manifest and its data.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        let ws = Workspace { dir: tempfile::tempdir().unwrap() };
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/manifests");
        copy_dir(&examples.join("refs"), &ws.path().join("refs"));
        copy_dir(&examples.join("data"), &ws.path().join("data"));
        ws
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn out(&self) -> PathBuf {
        self.path().join("out")
    }

    /// `nanobatch <args>` in this workspace, pointed at `emulator`, with a test key.
    pub fn cmd(&self, emulator: Option<&Emulator>) -> Command {
        let mut cmd = nanobatch();
        cmd.current_dir(self.path());
        if let Some(e) = emulator {
            cmd.env("GOOGLE_GEMINI_BASE_URL", e.url());
        }
        cmd.env("GEMINI_API_KEY", TEST_KEY);
        cmd
    }

    /// Runs `nanobatch run manifest -o out` against the emulator.
    pub fn run(&self, emulator: &Emulator, manifest: &str, extra: &[&str]) -> Output {
        let mut cmd = self.cmd(Some(emulator));
        cmd.args(["run", manifest, "-o", "out"]).args(extra);
        cmd.output().unwrap()
    }

    /// Starts `nanobatch run manifest -o out` against `emulator` in the background, its output
    /// piped (to be signalled or killed).
    pub fn spawn_run(&self, emulator: &Emulator, manifest: &str, extra: &[&str]) -> std::process::Child {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("nanobatch"))
            .current_dir(self.path())
            .args(["run", manifest, "-o", "out"])
            .args(extra)
            .env("GEMINI_API_KEY", TEST_KEY)
            .env("GOOGLE_GEMINI_BASE_URL", emulator.url())
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn report(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.out().join("report.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    pub fn journal(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.out().join(".nanobatch/journal.jsonl")).unwrap();
        text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Task records of the journal (`t == "task"`).
    pub fn task_records(&self) -> Vec<serde_json::Value> {
        self.journal().into_iter().filter(|r| r["t"] == "task").collect()
    }
}

pub const TEST_KEY: &str = "test-key-AIzaSyNANOBATCH-0123456789";

pub fn nanobatch() -> Command {
    let mut cmd = Command::cargo_bin("nanobatch").unwrap();
    for var in ["GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "NANOBATCH_LOG"] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing the output when it differs.
#[track_caller]
pub fn assert_code(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "stdout:\n{}\nstderr:\n{}", stdout(o), stderr(o));
}

/// Every image under `dir` (png/jpg), recursively, skipping the state directory.
pub fn images(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.file_name().is_some_and(|n| n == ".nanobatch") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "png" || e == "jpg" || e == "webp") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Files that look like leftovers of an interrupted write.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".nanobatch-tmp-")) {
                out.push(p);
            }
        }
    }
    out
}

/// The one hint whose label contains `label`.
#[track_caller]
pub fn hint_command(stderr: &str, label: &str) -> String {
    let found: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("hint: "))
        .filter(|h| h.split_once(": ").is_some_and(|(l, _)| l.contains(label)))
        .collect();
    assert_eq!(found.len(), 1, "one hint labelled `{label}` expected in:\n{stderr}");
    found[0].split_once(": ").unwrap().1.to_owned()
}

/// Runs `command` verbatim through `sh -c` in `dir`, as a user pasting it would: the built
/// binary on PATH as `nanobatch`, the test key in the environment, and nothing else of the
/// test's settings (no base URL in the environment: the command must carry what it needs).
pub fn paste(dir: &Path, command: &str) -> Output {
    let bin = assert_cmd::cargo::cargo_bin("nanobatch");
    let path = format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(command).current_dir(dir).env("PATH", path).env("GEMINI_API_KEY", TEST_KEY).env("NO_COLOR", "1");
    for var in ["GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "NANOBATCH_LOG"] {
        cmd.env_remove(var);
    }
    cmd.output().unwrap()
}

/// `nanobatch review DIR` as a child process; killed (SIGKILL) when dropped.
pub struct ReviewProcess {
    pub child: std::process::Child,
    /// The app's address, token included (the first line the command prints).
    pub url: String,
}

impl ReviewProcess {
    pub fn start(workspace: &Path, dir: &str) -> ReviewProcess {
        use std::io::BufRead;
        // The benchmark measures the release binary: NANOBATCH_BIN=target/release/nanobatch.
        let bin = std::env::var_os("NANOBATCH_BIN")
            .map_or_else(|| assert_cmd::cargo::cargo_bin!("nanobatch").to_path_buf(), std::path::PathBuf::from);
        let mut child = std::process::Command::new(bin)
            .args(["review", dir])
            .current_dir(workspace)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().to_owned();
        assert!(url.starts_with("http://127.0.0.1:") && url.ends_with('/'), "the URL is printed first: {url:?}");
        ReviewProcess { child, url }
    }

    /// Ends the server as a crash would (SIGKILL: no chance to flush anything).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ReviewProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Debian's chromedriver on a free loopback port, driving headless chromium; `None` (with
/// `NANOBATCH_SKIP_BROWSER` set) where they are not installed.
pub struct ChromeDriver {
    child: std::process::Child,
    pub url: String,
    profile: tempfile::TempDir,
}

impl ChromeDriver {
    pub fn start() -> Option<ChromeDriver> {
        let driver = ["/usr/bin/chromedriver", "chromedriver"]
            .into_iter()
            .find(|d| std::process::Command::new(d).arg("--version").output().is_ok_and(|o| o.status.success()));
        let Some(driver) = driver else {
            assert!(
                std::env::var_os("NANOBATCH_SKIP_BROWSER").is_some(),
                "chromedriver is not installed (apt-get install chromium-driver); set NANOBATCH_SKIP_BROWSER=1 to skip"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(ChromeDriver { child, url: format!("http://127.0.0.1:{port}"), profile: tempfile::tempdir().unwrap() })
    }

    /// A browser session: headless chromium, 1280×900, nothing from the network.
    pub async fn session(&self) -> fantoccini::Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,900", "--force-device-scale-factor=1", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", self.profile.path().display()),
                ]
            }),
        );
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromium session")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
