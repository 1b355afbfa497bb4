//! The review app's server (axum): the page, its JSON API and the run's images, on 127.0.0.1
//! only, under a random token in the path (`http://127.0.0.1:PORT/TOKEN/`) so that other users
//! of the machine, and pages in the browser that do not know the token, can neither read nor mark.
//!
//! Everything comes from the run directory: the plan snapshot, the journal and the review log
//! are read at start and read again when they change (a run may be going on). Images are served
//! by content hash, and only those the journal names, from inside the run directory; there is no
//! path in a URL to traverse. A mark is answered only once it is on disk.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use super::index::{IndexError, RunIndex};
use super::log::{self, MarkRecord, Verdict};
use super::marks::{Mark, Marks};
use crate::checkpoint::RunDir;
use crate::checkpoint::snapshot::SnapshotTask;
use crate::report::thumbs;

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// Most items one page of the task list returns.
const MAX_LIMIT: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
}

/// A review server listening on loopback.
pub struct Running {
    pub addr: SocketAddr,
    pub token: String,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    /// Notes on the run directory found while loading it (damaged lines).
    pub notes: Vec<String>,
    pub name: String,
    pub tasks: usize,
}

impl Running {
    /// The URL to open (the token included).
    pub fn url(&self) -> String {
        format!("http://{}/{}/", self.addr, self.token)
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = self.task.await;
    }

    /// Serves until the process is interrupted (Ctrl-C or SIGTERM).
    pub async fn until_interrupted(self) {
        let terminate = async {
            #[cfg(unix)]
            if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                term.recv().await;
                return;
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        self.stop().await;
    }
}

/// Loads the run directory and starts serving it on `127.0.0.1:port` (0: any free port).
pub async fn start(dir: &Path, port: u16) -> Result<Running, ServeError> {
    let root = dir.to_path_buf();
    let loaded = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || Loaded::read(&root)).await.unwrap_or_else(|e| panic!("{e}"))?
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|source| ServeError::Bind { port, source })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind { port, source })?;
    let token = hex::encode(rand::random::<[u8; 16]>());
    let (notes, name, tasks) =
        (loaded.index.notes.clone(), loaded.index.snapshot.header.name.clone(), loaded.index.len());
    let app = Arc::new(App {
        canonical_root: root.canonicalize().unwrap_or_else(|_| root.clone()),
        root,
        loaded: RwLock::new(Arc::new(loaded)),
        writing: tokio::sync::Mutex::new(()),
        hosts: [format!("127.0.0.1:{}", addr.port()), format!("localhost:{}", addr.port())],
    });
    let router = router(app, &token);
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(Running { addr, token, shutdown, task, notes, name, tasks })
}

fn router(app: Arc<App>, token: &str) -> Router {
    let api = Router::new()
        .route(&format!("/{token}/"), get(page))
        .route(&format!("/{token}/app.js"), get(script))
        .route(&format!("/{token}/app.css"), get(style))
        .route(&format!("/{token}/api/summary"), get(summary))
        .route(&format!("/{token}/api/tasks"), get(tasks))
        .route(&format!("/{token}/api/task/{{i}}"), get(task_detail))
        .route(&format!("/{token}/api/row/{{i}}"), get(row))
        .route(&format!("/{token}/api/marks"), post(marks))
        .route(&format!("/{token}/image/{{hash}}"), get(image))
        .route(&format!("/{token}/thumb/{{hash}}"), get(thumb));
    let with_slash = format!("/{token}/");
    api.route(&format!("/{token}"), get(move || async move { Redirect::permanent(&with_slash) }))
        .layer(middleware::from_fn_with_state(app.clone(), check_host))
        .with_state(app)
}

/// What the server knows of the run directory, and the file states it was read at.
struct Loaded {
    index: Arc<RunIndex>,
    marks: Marks,
    /// (journal, plan snapshot) when read: a change means the run moved on.
    run_stamp: (Stamp, Stamp),
    log_stamp: Stamp,
}

type Stamp = Option<(u64, SystemTime)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

impl Loaded {
    fn read(root: &Path) -> Result<Loaded, IndexError> {
        let run_dir = RunDir::new(root);
        let (run_stamp, log_stamp) =
            ((stamp(&run_dir.journal()), stamp(&run_dir.plan())), stamp(&run_dir.review_log()));
        let index = RunIndex::load(root)?;
        let marks = index.marks.clone();
        Ok(Loaded { index: Arc::new(index), marks, run_stamp, log_stamp })
    }

    fn mark(&self, i: usize) -> Option<&Mark> {
        self.marks.get(&self.index.image(i)?.hash)
    }
}

struct App {
    root: PathBuf,
    canonical_root: PathBuf,
    loaded: RwLock<Arc<Loaded>>,
    /// One mark write at a time from this process (other processes wait on the log's lock).
    writing: tokio::sync::Mutex<()>,
    /// The Host headers a request may carry (a page from elsewhere that resolves its own name
    /// to 127.0.0.1 is refused).
    hosts: [String; 2],
}

type ApiError = (StatusCode, String);

impl App {
    /// The run as it is now: read again when the journal, the snapshot or the review log changed.
    async fn current(self: &Arc<Self>) -> Result<Arc<Loaded>, ApiError> {
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner()).clone();
        let run_dir = RunDir::new(&self.root);
        let run_now = (stamp(&run_dir.journal()), stamp(&run_dir.plan()));
        let log_now = stamp(&run_dir.review_log());
        if run_now == loaded.run_stamp && log_now == loaded.log_stamp {
            return Ok(loaded);
        }
        let app = self.clone();
        let fresh = tokio::task::spawn_blocking(move || -> Result<Loaded, IndexError> {
            if run_now != loaded.run_stamp {
                return Loaded::read(&app.root);
            }
            // Only marks changed (`nanobatch mark` from a terminal): the log alone is read.
            let read = super::read_marks(&RunDir::new(&app.root))?;
            Ok(Loaded { index: loaded.index.clone(), marks: read.marks, run_stamp: run_now, log_stamp: log_now })
        })
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| internal(e.to_string()))?;
        let fresh = Arc::new(fresh);
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    /// Appends marks to the log (durably) and to the marks in memory.
    async fn write_marks(self: &Arc<Self>, records: Vec<MarkRecord>) -> Result<Arc<Loaded>, ApiError> {
        let _guard = self.writing.lock().await;
        let loaded = self.current().await?;
        let path = RunDir::new(&self.root).review_log();
        let written = records.clone();
        let appended = tokio::task::spawn_blocking(move || log::append(&path, &written))
            .await
            .map_err(|e| internal(e.to_string()))?
            .map_err(|e| internal(e.to_string()))?;
        // Another process appended since the log was read: the next request reads it again.
        let knew_all = appended.before == loaded.log_stamp.map_or(0, |(len, _)| len);
        let log_stamp = appended.after.filter(|_| knew_all).and_then(|m| Some((m.len(), m.modified().ok()?)));
        let mut marks = loaded.marks.clone();
        for record in records {
            marks.apply(record);
        }
        // The index is shared, not copied: only the marks and the log's stamp are new.
        let next = Arc::new(Loaded { index: loaded.index.clone(), marks, run_stamp: loaded.run_stamp, log_stamp });
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = next.clone();
        Ok(next)
    }

    /// The file of an image the journal names, if it is inside the run directory.
    fn file_of(&self, rel: &str) -> Option<PathBuf> {
        let relative = Path::new(rel);
        if !relative.components().all(|c| matches!(c, Component::Normal(_))) {
            return None;
        }
        let real = self.root.join(relative).canonicalize().ok()?;
        real.starts_with(&self.canonical_root).then_some(real)
    }
}

fn internal(message: String) -> ApiError {
    (StatusCode::INTERNAL_SERVER_ERROR, message)
}

fn not_found(what: &str) -> ApiError {
    (StatusCode::NOT_FOUND, format!("no {what} here"))
}

async fn check_host(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !app.hosts.iter().any(|h| h == host) {
        return (StatusCode::FORBIDDEN, "this server answers only at 127.0.0.1").into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
            ),
        ],
        PAGE,
    )
        .into_response()
}

async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], SCRIPT)
        .into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], STYLE).into_response()
}

/// One cell of the contact sheet.
#[derive(Serialize)]
struct Item {
    /// Index in the plan.
    i: usize,
    id: String,
    key: String,
    job: String,
    model: String,
    size: String,
    /// The other axes that tell this task from its row's others (prompt, refs, step, variant).
    label: String,
    status: &'static str,
    /// Content hash of the current image.
    image: Option<String>,
    /// `approved`, `rejected`, or `pending` (an image nobody marked); absent without image.
    mark: Option<&'static str>,
    note: Option<String>,
    cost_usd: f64,
    error: Option<String>,
    /// Earlier images kept (re-rolled, or replaced when the task changed).
    versions: usize,
}

fn item(loaded: &Loaded, i: usize) -> Item {
    let index = &loaded.index;
    let task = index.task(i);
    let image = index.image(i).map(|img| img.hash.clone());
    let mark = loaded.mark(i);
    Item {
        i,
        id: task.id.clone(),
        key: task.key.clone(),
        job: task.job.clone(),
        model: task.model.clone(),
        size: format!("{}@{}", task.ratio, task.size),
        label: label(task),
        status: index.outcomes[i].status,
        mark: image.as_ref().map(|_| mark.map_or("pending", |m| m.mark.as_str())),
        note: mark.and_then(|m| m.note.clone()),
        image,
        cost_usd: index.outcomes[i].actual_cost().dollars(),
        error: index.finished(i).and_then(|f| f.error.as_ref()).map(|(_, message)| message.chars().take(300).collect()),
        versions: index.versions(i).len(),
    }
}

fn label(task: &SnapshotTask) -> String {
    let mut parts: Vec<String> = vec![format!("{}@{}", task.ratio, task.size)];
    parts.extend(task.prompt_name.iter().cloned());
    parts.extend(task.ref_set.iter().cloned());
    parts.push(task.model.strip_prefix("gemini-").unwrap_or(&task.model).to_owned());
    parts.extend(task.step.iter().cloned());
    if task.variant > 1 {
        parts.push(format!("v{}", task.variant));
    }
    parts.join(" · ")
}

#[derive(Serialize)]
struct Summary {
    name: String,
    description: Option<String>,
    manifest: String,
    dir: String,
    tasks: usize,
    /// Facets for the filters: value → number of tasks.
    status: BTreeMap<&'static str, u64>,
    job: BTreeMap<String, u64>,
    model: BTreeMap<String, u64>,
    size: BTreeMap<String, u64>,
    mark: BTreeMap<&'static str, u64>,
    notes: Vec<String>,
}

async fn summary(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let loaded = app.current().await?;
    let index = &loaded.index;
    let mut out = Summary {
        name: index.snapshot.header.name.clone(),
        description: index.snapshot.header.description.clone(),
        manifest: index.snapshot.header.manifest.clone(),
        dir: app.root.display().to_string(),
        tasks: index.len(),
        status: BTreeMap::new(),
        job: BTreeMap::new(),
        model: BTreeMap::new(),
        size: BTreeMap::new(),
        mark: BTreeMap::new(),
        notes: index.notes.clone(),
    };
    for i in 0..index.len() {
        let task = index.task(i);
        *out.status.entry(index.outcomes[i].status).or_default() += 1;
        *out.job.entry(task.job.clone()).or_default() += 1;
        *out.model.entry(task.model.clone()).or_default() += 1;
        *out.size.entry(format!("{}@{}", task.ratio, task.size)).or_default() += 1;
        if index.image(i).is_some() {
            *out.mark.entry(loaded.mark(i).map_or("pending", |m| m.mark.as_str())).or_default() += 1;
        }
    }
    Ok(no_store(axum::Json(out)))
}

/// Filters and search of the task list; empty values mean "any".
#[derive(Debug, Default, Deserialize)]
struct Filter {
    #[serde(default)]
    status: String,
    #[serde(default)]
    job: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    size: String,
    #[serde(default)]
    mark: String,
    /// Words that must all appear in the key, the id or the prompt (any case).
    #[serde(default)]
    q: String,
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    limit: Option<usize>,
}

impl Filter {
    fn matches(&self, loaded: &Loaded, words: &[String], i: usize) -> bool {
        let index = &loaded.index;
        let task = index.task(i);
        let mark = index.image(i).map(|_| loaded.mark(i).map_or("pending", |m| m.mark.as_str()));
        (self.status.is_empty() || self.status == index.outcomes[i].status)
            && (self.job.is_empty() || self.job == task.job)
            && (self.model.is_empty() || self.model == task.model)
            && (self.size.is_empty() || self.size == format!("{}@{}", task.ratio, task.size))
            && (self.mark.is_empty() || Some(self.mark.as_str()) == mark)
            && words.iter().all(|w| {
                [&task.key, &task.id, &task.prompt].iter().any(|field| field.to_lowercase().contains(w.as_str()))
            })
    }
}

#[derive(Serialize)]
struct Page {
    total: usize,
    offset: usize,
    items: Vec<Item>,
}

async fn tasks(State(app): State<Arc<App>>, Query(filter): Query<Filter>) -> Result<Response, ApiError> {
    let loaded = app.current().await?;
    let words: Vec<String> = filter.q.split_whitespace().map(str::to_lowercase).collect();
    let limit = filter.limit.unwrap_or(200).min(MAX_LIMIT);
    let (mut total, mut items) = (0, Vec::new());
    for i in 0..loaded.index.len() {
        if filter.matches(&loaded, &words, i) {
            if total >= filter.offset && items.len() < limit {
                items.push(item(&loaded, i));
            }
            total += 1;
        }
    }
    Ok(no_store(axum::Json(Page { total, offset: filter.offset, items })))
}

#[derive(Serialize)]
struct Detail {
    #[serde(flatten)]
    item: Item,
    prompt: String,
    prompt_name: Option<String>,
    ref_set: Option<String>,
    step: Option<String>,
    variant: u32,
    vars: Vec<(String, String)>,
    refs: Vec<String>,
    /// The earlier steps of this conversation, first to last.
    history: Vec<Step>,
    /// Tasks of other jobs whose images this one takes (`from:`).
    upstream: Vec<Item>,
    /// Every output of the current version.
    outputs: Vec<String>,
    attempts: u32,
    estimated_usd: f64,
    finish_reason: Option<String>,
    error_class: Option<String>,
    noted_at: Option<String>,
    /// Earlier images, oldest first, with the marks they had.
    versions: Vec<VersionView>,
}

/// An earlier step of a conversation: its image and the prompt it was sent with.
#[derive(Serialize)]
struct Step {
    #[serde(flatten)]
    item: Item,
    prompt: String,
}

#[derive(Serialize)]
struct VersionView {
    image: String,
    path: String,
    reason: String,
    at: String,
    mark: Option<&'static str>,
    note: Option<String>,
}

async fn task_detail(State(app): State<Arc<App>>, UrlPath(i): UrlPath<usize>) -> Result<Response, ApiError> {
    let loaded = app.current().await?;
    let index = &loaded.index;
    if i >= index.len() {
        return Err(not_found("such task"));
    }
    let task = index.task(i);
    let mut history = Vec::new();
    let mut step = i;
    while let Some(prev) = index.task(step).deps.iter().map(|d| *d as usize).find(|d| index.task(*d).job == task.job) {
        history.push(Step { item: item(&loaded, prev), prompt: index.task(prev).prompt.clone() });
        step = prev;
    }
    history.reverse();
    let upstream = task
        .deps
        .iter()
        .map(|d| *d as usize)
        .filter(|d| index.task(*d).job != task.job)
        .map(|d| item(&loaded, d))
        .collect();
    let finished = index.finished(i);
    let detail = Detail {
        item: item(&loaded, i),
        prompt: task.prompt.clone(),
        prompt_name: task.prompt_name.clone(),
        ref_set: task.ref_set.clone(),
        step: task.step.clone(),
        variant: task.variant,
        vars: task.vars.clone(),
        refs: task.refs.clone(),
        history,
        upstream,
        outputs: finished.map(|f| f.outputs.clone()).unwrap_or_default(),
        attempts: finished.map_or(index.outcomes[i].attempts, |f| f.attempts),
        estimated_usd: task.est_usd.dollars(),
        finish_reason: finished.and_then(|f| f.finish_reason.clone()),
        error_class: finished.and_then(|f| f.error.as_ref()).map(|(class, _)| class.clone()),
        noted_at: loaded.mark(i).map(|m| m.at.clone()),
        versions: index
            .versions(i)
            .iter()
            .map(|v| {
                let mark = loaded.marks.latest(&v.hash);
                VersionView {
                    image: v.hash.clone(),
                    path: v.path.clone(),
                    reason: v.reason.clone(),
                    at: v.at.clone(),
                    mark: mark.map(|m| m.mark.as_str()),
                    note: mark.and_then(|m| m.note.clone()),
                }
            })
            .collect(),
    };
    Ok(no_store(axum::Json(detail)))
}

/// Every task of the same job and row: the variants, models, sizes and steps to compare.
async fn row(State(app): State<Arc<App>>, UrlPath(i): UrlPath<usize>) -> Result<Response, ApiError> {
    let loaded = app.current().await?;
    let index = &loaded.index;
    if i >= index.len() {
        return Err(not_found("such task"));
    }
    let (job, key) = (&index.task(i).job, &index.task(i).key);
    let items: Vec<Item> = (0..index.len())
        .filter(|&t| index.task(t).job == *job && index.task(t).key == *key)
        .map(|t| item(&loaded, t))
        .collect();
    Ok(no_store(axum::Json(items)))
}

#[derive(Deserialize)]
struct MarkRequest {
    marks: Vec<MarkChange>,
}

#[derive(Deserialize)]
struct MarkChange {
    /// The content hash of the image the person saw: a mark never lands on an image that
    /// replaced it in the meantime.
    image: String,
    mark: Verdict,
    #[serde(default)]
    note: Option<String>,
}

async fn marks(
    State(app): State<Arc<App>>,
    axum::Json(request): axum::Json<MarkRequest>,
) -> Result<Response, ApiError> {
    let loaded = app.current().await?;
    let mut records = Vec::with_capacity(request.marks.len());
    let mut tasks = Vec::with_capacity(request.marks.len());
    for change in request.marks {
        if change.mark == Verdict::Rerolled {
            return Err((StatusCode::BAD_REQUEST, "a mark is approved, rejected or cleared".into()));
        }
        let Some(i) = loaded.index.task_of_image(&change.image) else {
            return Err((
                StatusCode::CONFLICT,
                format!("image {} is no longer the task's current image (the run moved on); reload", change.image),
            ));
        };
        let note = change.note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        let note = if change.mark == Verdict::Cleared { None } else { note };
        let path = loaded.index.image(i).map(|img| img.path.clone()).unwrap_or_default();
        records.push(MarkRecord::new(&change.image, &loaded.index.task(i).id, &path, change.mark, note));
        tasks.push(i);
    }
    let loaded = app.write_marks(records).await?;
    let items: Vec<Item> = tasks.into_iter().map(|i| item(&loaded, i)).collect();
    Ok(no_store(axum::Json(items)))
}

async fn image(State(app): State<Arc<App>>, UrlPath(hash): UrlPath<String>) -> Result<Response, ApiError> {
    let loaded = app.current().await?;
    let rel = loaded.index.image_path(&hash).map(str::to_owned).ok_or_else(|| not_found("such image"))?;
    let file = app.file_of(&rel).ok_or_else(|| not_found("image file"))?;
    let bytes = tokio::fs::read(&file).await.map_err(|_| not_found("image file"))?;
    let mime = crate::media::sniff(&bytes).map_or("application/octet-stream", |k| k.mime());
    Ok(immutable(mime, bytes))
}

async fn thumb(State(app): State<Arc<App>>, UrlPath(hash): UrlPath<String>) -> Result<Response, ApiError> {
    let loaded = app.current().await?;
    let rel = loaded.index.image_path(&hash).map(str::to_owned).ok_or_else(|| not_found("such image"))?;
    app.file_of(&rel).ok_or_else(|| not_found("image file"))?;
    let root = app.root.clone();
    let made =
        tokio::task::spawn_blocking(move || thumbs::ensure_one(&root, &rel, &hash).and_then(|p| std::fs::read(p).ok()))
            .await
            .map_err(|e| internal(e.to_string()))?;
    let bytes = made.ok_or_else(|| not_found("readable image"))?;
    Ok(immutable("image/jpeg", bytes))
}

/// Images are addressed by content hash: the same URL is always the same bytes.
fn immutable(mime: &'static str, bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "private, max-age=31536000, immutable")], bytes)
        .into_response()
}

fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_app_assets_are_embedded() {
        assert!(super::PAGE.contains("app.js"));
        assert!(!super::SCRIPT.contains("http://") && !super::SCRIPT.contains("https://"), "no network");
        assert!(!super::PAGE.contains("https://"), "no CDN");
    }
}
