//! One attempt of one task: build the request, send it, read the answer, verify the image, and
//! make the image, its sidecar (and, mid-conversation, the model's turn) durable. The outcome
//! goes back to the dispatcher as data; a unit never touches run state or the journal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::request::{ImageFile, PastTurn, RequestConfig, UserTurn, build_body};
use super::retry::{FailureClass, classify};
use bytes::Bytes;
use futures::FutureExt;

use crate::api::body::ReplyBody;
use crate::api::response::{ImageSource, Reply, parse_reply, raw_model_content};
use crate::api::splitter::{BlobSink, Splitter, blob_index};
use crate::api::{ApiError, ImageApi};
use crate::buffers::{BufferPool, Pooled};
use crate::catalog::{Tier, TokenCounts, Usd};
use crate::checkpoint::RunDir;
use crate::checkpoint::records::GroundingRecord;
use crate::checkpoint::store::{OutputStore, Owner, PendingImage, StoreError, Written};
use crate::digest::{self, ContentHasher};
use crate::manifest::Manifest;
use crate::manifest::model::RefKind;
use crate::media::{self, Integrity};
use crate::plan::{Plan, TaskIndex, TaskView};
use crate::redact::{redact_text, redact_url};
use crate::report::sidecar::{Sidecar, SidecarRef, SidecarSource};
use crate::report::thumbs::Background;

/// Longest model text kept in the journal and sidecar.
const MAX_TEXT: usize = 2_000;

/// What every unit of a run shares.
pub struct UnitContext {
    pub manifest: Arc<Manifest>,
    pub plan: Arc<Plan>,
    pub api: Arc<dyn ImageApi>,
    pub store: Arc<OutputStore>,
    pub tier: Tier,
    pub strict: bool,
    /// Tasks whose model turn a later step replays.
    pub keep_turn: Vec<bool>,
    /// Thumbnails for the contact sheet, made as images arrive (none with `--no-html`).
    pub thumbs: Option<Arc<Background>>,
}

/// What the dispatcher hands a unit besides the task.
#[derive(Debug, Clone)]
pub struct UnitInput {
    pub index: TaskIndex,
    pub attempt: u32,
    pub past: Vec<PastTurn>,
    /// Images from upstream tasks for this turn, with their task ids.
    pub images: Vec<(ImageFile, String)>,
}

#[derive(Debug)]
pub enum UnitResult {
    Image(Box<ImageDone>),
    NoImage(Box<NoImageDone>),
    Failed {
        class: FailureClass,
        error: ApiError,
    },
    /// An input file could not be read (deleted since planning): the task cannot be sent.
    Input(String),
    /// The image was billed but could not be stored (disk full, read-only): fatal for the run.
    Store {
        error: StoreError,
        usage: TokenCounts,
        cost: Usd,
    },
    /// A 200 whose image is not whole (cut short, damaged, not base64, not an image, or its
    /// URL could not be downloaded): billed, and worth another attempt.
    Broken(Box<NoImageDone>),
    /// The image is at a URL (`fileData`): download it, then finish (see [`run`]).
    Fetch(Box<Fetch>),
}

/// A response whose image is to be downloaded before the attempt can finish.
#[derive(Debug)]
pub struct Fetch {
    pub uri: String,
    /// The response (without any streamed image), to be read again once the image is here.
    skeleton: Vec<u8>,
    tier: Tier,
}

#[derive(Debug)]
pub struct ImageDone {
    pub written: Written,
    /// The image's content hash ([`digest`]).
    pub blake3: String,
    pub mime: &'static str,
    pub width: u32,
    pub height: u32,
    pub usage: TokenCounts,
    pub cost: Usd,
    pub tier: Tier,
    pub finish_reason: Option<String>,
    pub model_version: Option<String>,
    pub response_id: Option<String>,
    pub text: Option<String>,
    pub size_mismatch: Option<(u32, u32)>,
    pub grounding: Vec<GroundingRecord>,
    pub turn: Option<String>,
    /// The usage the server reported, when no request could have used that much (`usage` and
    /// `cost` are then the task's estimate).
    pub implausible_usage: Option<TokenCounts>,
}

#[derive(Debug)]
pub struct NoImageDone {
    pub tier: Tier,
    pub reason: String,
    pub finish_reason: Option<String>,
    pub message: Option<String>,
    pub text: Option<String>,
    pub usage: TokenCounts,
    pub cost: Usd,
    pub model_version: Option<String>,
    pub response_id: Option<String>,
    /// As in [`ImageDone`].
    pub implausible_usage: Option<TokenCounts>,
    /// The response reported no usage: what it cost is not known (possibly billed).
    pub usage_missing: bool,
}

/// Runs one attempt; returns its result and how long the request took.
pub async fn run(ctx: Arc<UnitContext>, input: UnitInput) -> (UnitResult, Duration) {
    let started = Instant::now();
    let body = if reads_files(&ctx, &input) {
        let ctx = ctx.clone();
        let input = input.clone();
        match tokio::task::spawn_blocking(move || prepare_body(&ctx, &input)).await {
            Ok(body) => body,
            Err(e) => Err(format!("request builder failed: {e}")),
        }
    } else {
        // A prompt alone: microseconds of work, not worth two thread switches.
        prepare_body(&ctx, &input)
    };
    let body = match body {
        Ok(body) => body,
        Err(message) => return (UnitResult::Input(message), started.elapsed()),
    };
    let model = {
        let task = &ctx.plan.tasks[input.index as usize];
        TaskView::new(&ctx.manifest, task).model.id.clone()
    };
    let reply = match ctx.api.generate(&model, body).await {
        Ok(reply) => reply,
        Err(error) => return (UnitResult::Failed { class: classify(&error), error }, started.elapsed()),
    };
    let tier = ctx.tier;
    if ctx.keep_turn[input.index as usize] {
        // The next turn replays this response verbatim: read it whole.
        let body = match reply.collect().await {
            Ok(body) => body,
            Err(error) => return (UnitResult::Failed { class: classify(&error), error }, started.elapsed()),
        };
        let latency = started.elapsed();
        let worker = ctx.clone();
        let unit = input.clone();
        let result = tokio::task::spawn_blocking(move || process(&worker, &unit, &body, tier)).await;
        return (fetch_if_asked(ctx, input, result.unwrap_or_else(|e| worker_failed(&e))).await, latency);
    }
    let (result, latency) = receive_streamed(ctx.clone(), input.clone(), reply, tier, started).await;
    (fetch_if_asked(ctx, input, result).await, latency)
}

/// An image given as a URL is downloaded (streamed into its temp file, verified like an inline
/// one), then the response is finished with it; any other result is returned as it is.
async fn fetch_if_asked(ctx: Arc<UnitContext>, input: UnitInput, result: UnitResult) -> UnitResult {
    let UnitResult::Fetch(fetch) = result else { return result };
    let Fetch { uri, skeleton, tier } = *fetch;
    let fetched = match download(&ctx, &input, &uri).await {
        Ok(blob) => Fetched::File(blob),
        Err(Download::Failed(reason)) => Fetched::Failed(format!("the image's URL could not be downloaded: {reason}")),
        Err(Download::Store(error)) => Fetched::Store(error),
    };
    let result =
        tokio::task::spawn_blocking(move || finish(&ctx, &input, &skeleton, tier, Vec::new(), None, fetched)).await;
    result.unwrap_or_else(|e| worker_failed(&e))
}

/// Why an image given by URL is not here.
enum Download {
    /// The server's answer (status, connection, size or time limit): the image is broken.
    Failed(String),
    /// Our disk refused it.
    Store(StoreError),
}

/// Downloads `uri` into a temp file next to the task's output: size-limited and timed out like
/// any answer, hashed and checked as it arrives, in short blocking jobs (as
/// [`receive_streamed`]).
async fn download(ctx: &Arc<UnitContext>, input: &UnitInput, uri: &str) -> Result<BlobFile, Download> {
    let failed = |e: &dyn std::fmt::Display| Download::Failed(redact_text(&e.to_string()));
    let mut body = ctx.api.fetch(uri).await.map_err(|e| failed(&e))?;
    let files = Box::new(BlobFiles { ctx: ctx.clone(), input: input.clone(), blobs: Vec::new(), error: None });
    let mut files = in_worker(files, |files| {
        // A failure is kept in `files.error`.
        let _ = files.begin(0);
    })
    .await
    .map_err(|e| failed(&e))?;
    let mut ended = false;
    while !ended && files.error.is_none() {
        let pieces = match gather(&mut body, &mut ended).await {
            Ok(pieces) => pieces,
            Err(e) => {
                // Dropping the temp file deletes it: disk work.
                let _ = tokio::task::spawn_blocking(move || drop(files)).await;
                return Err(failed(&e));
            }
        };
        files = in_worker(files, move |files| {
            for piece in &pieces {
                if files.write(0, piece).is_err() {
                    break;
                }
            }
        })
        .await
        .map_err(|e| failed(&e))?;
    }
    if let Some(error) = files.error.take() {
        return Err(Download::Store(error));
    }
    let mut blob = files.blobs.pop().ok_or_else(|| Download::Failed("nothing was received".into()))?;
    blob.valid = true;
    Ok(blob)
}

/// Runs `work` on `files` in a blocking job and hands them back.
async fn in_worker<F>(mut files: Box<BlobFiles>, work: F) -> Result<Box<BlobFiles>, tokio::task::JoinError>
where
    F: FnOnce(&mut BlobFiles) + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        work(&mut files);
        files
    })
    .await
}

/// Reads the body as it arrives and hands it to short blocking jobs that split, decode, hash and
/// write it: the image is never whole in memory, and the runtime's threads never touch the disk.
///
/// One job at a time per response, with what has arrived meanwhile (up to [`GATHER_BYTES`]):
/// - the next piece is read only once the last is written, so hyper mostly reuses one read
///   buffer per connection instead of allocating new ones while older pieces wait;
/// - only as many blocking threads allocate as there are pieces being written at once (one
///   worker per response in flight spread a long run's garbage over every malloc arena: a
///   10,000-task run of 4K images peaked 100 MiB higher);
/// - each job costs two thread switches, so a job takes every piece already received.
async fn receive_streamed(
    ctx: Arc<UnitContext>,
    input: UnitInput,
    mut body: ReplyBody,
    tier: Tier,
    started: Instant,
) -> (UnitResult, Duration) {
    let mut stream = Box::new(Streamed::new(ctx, input));
    let mut ended = false;
    while !ended {
        let pieces = match gather(&mut body, &mut ended).await {
            Ok(pieces) => pieces,
            Err(error) => {
                let latency = started.elapsed();
                // Dropping the temp files deletes them: disk work.
                let _ = tokio::task::spawn_blocking(move || drop(stream)).await;
                return (UnitResult::Failed { class: classify(&error), error }, latency);
            }
        };
        stream = match tokio::task::spawn_blocking(move || stream.feed(&pieces)).await {
            Ok(stream) => stream,
            Err(e) => return (worker_failed(&e), started.elapsed()),
        };
    }
    let latency = started.elapsed();
    let result = tokio::task::spawn_blocking(move || stream.finish(tier)).await;
    (result.unwrap_or_else(|e| worker_failed(&e)), latency)
}

/// Bytes of the body handed to one job at most, when that much has already arrived.
const GATHER_BYTES: usize = 1 << 20;

/// The next piece of the body and those after it that are already here (up to
/// [`GATHER_BYTES`]); `ended` once the body's (complete) end was read.
async fn gather(body: &mut ReplyBody, ended: &mut bool) -> Result<Vec<Bytes>, ApiError> {
    let mut pieces = Vec::new();
    let mut gathered = 0;
    let mut next = body.chunk().await;
    loop {
        match next? {
            Some(piece) => {
                gathered += piece.len();
                pieces.push(piece);
            }
            None => {
                *ended = true;
                return Ok(pieces);
            }
        }
        if gathered >= GATHER_BYTES {
            return Ok(pieces);
        }
        // A read that would wait is dropped: nothing is lost, the body's frame future holds no
        // data of its own.
        match body.chunk().now_or_never() {
            Some(result) => next = result,
            None => return Ok(pieces),
        }
    }
}

fn worker_failed(e: &tokio::task::JoinError) -> UnitResult {
    UnitResult::Failed { class: FailureClass::Unknown, error: ApiError::Malformed(e.to_string()) }
}

/// A response being received: the splitter and the images it has written so far.
struct Streamed {
    splitter: Splitter,
    files: BlobFiles,
}

impl Streamed {
    fn new(ctx: Arc<UnitContext>, input: UnitInput) -> Streamed {
        Streamed { splitter: Splitter::new(), files: BlobFiles { ctx, input, blobs: Vec::new(), error: None } }
    }

    fn feed(mut self: Box<Self>, pieces: &[Bytes]) -> Box<Self> {
        for piece in pieces {
            if let Err(e) = self.splitter.feed(piece, &mut self.files) {
                // Keep reading (the files are dropped from now on): the response is paid for,
                // and its usage says how much.
                self.files.failed(e);
            }
        }
        self
    }

    fn finish(self: Box<Self>, tier: Tier) -> UnitResult {
        let Streamed { splitter, mut files } = *self;
        let skeleton = match splitter.finish(&mut files) {
            Ok((skeleton, _)) => skeleton,
            Err(e) => {
                files.failed(e);
                Vec::new()
            }
        };
        let BlobFiles { ctx, input, blobs, error } = files;
        finish(&ctx, &input, &skeleton, tier, blobs, error, Fetched::None)
    }
}

/// Streamed images: each a temp file next to the task's output, hashed as it is written, with
/// its first bytes kept to recognise the format and read the size.
struct BlobFiles {
    ctx: Arc<UnitContext>,
    input: UnitInput,
    blobs: Vec<BlobFile>,
    /// The store's own error, when a write failed (the splitter only sees an `io::Error`).
    error: Option<StoreError>,
}

struct BlobFile {
    file: PendingImage,
    hasher: ContentHasher,
    /// Whether the image is whole, checked as it is written.
    integrity: Integrity,
    head: Pooled,
    valid: bool,
}

/// The image of a response whose image part is a URL.
enum Fetched {
    /// Not downloaded (yet): the response is inline, or the download comes next.
    None,
    File(BlobFile),
    Failed(String),
    Store(StoreError),
}

/// Bytes kept from the start of an image: enough for every header format we read.
const HEAD_BYTES: usize = 64 << 10;
/// Heads of finished images, one per response in flight at `-j 64`.
static HEAD_BUFFERS: BufferPool = BufferPool::new(64);

impl BlobFiles {
    fn fail(&mut self, error: StoreError) -> std::io::Error {
        let io = std::io::Error::other(error.to_string());
        self.error = Some(error);
        io
    }

    /// Records the first failure and drops every file: nothing more is written.
    fn failed(&mut self, e: std::io::Error) {
        if self.error.is_none() {
            let task = &self.ctx.plan.tasks[self.input.index as usize];
            let path = self.ctx.store.resolve(&task.output);
            self.error = Some(StoreError::Fs(crate::fsutil::FsError::new("cannot write", &path, e)));
        }
        self.blobs.clear();
    }
}

impl BlobSink for BlobFiles {
    fn begin(&mut self, index: usize) -> std::io::Result<()> {
        if self.error.is_some() || index != self.blobs.len() {
            return Ok(());
        }
        let task = &self.ctx.plan.tasks[self.input.index as usize];
        match self.ctx.store.begin_image(&task.output) {
            Ok(file) => {
                let mut head = HEAD_BUFFERS.take();
                head.clear();
                head.reserve(HEAD_BYTES);
                self.blobs.push(BlobFile {
                    file,
                    hasher: ContentHasher::new(),
                    integrity: Integrity::new(),
                    head,
                    valid: false,
                });
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn write(&mut self, index: usize, decoded: &[u8]) -> std::io::Result<()> {
        let Some(blob) = self.blobs.get_mut(index) else { return Ok(()) };
        if blob.head.len() < HEAD_BYTES {
            let take = (HEAD_BYTES - blob.head.len()).min(decoded.len());
            blob.head.extend_from_slice(&decoded[..take]);
        }
        blob.hasher.update(decoded);
        blob.integrity.update(decoded);
        if let Err(e) = blob.file.write(decoded) {
            return Err(self.fail(StoreError::Fs(e)));
        }
        Ok(())
    }

    fn end(&mut self, index: usize, valid: bool) -> std::io::Result<()> {
        if let Some(blob) = self.blobs.get_mut(index) {
            blob.valid = valid;
        }
        Ok(())
    }
}

/// Whether building the request reads files (reference images, earlier outputs, turns).
fn reads_files(ctx: &UnitContext, input: &UnitInput) -> bool {
    !(ctx.plan.tasks[input.index as usize].refs.is_empty() && input.images.is_empty() && input.past.is_empty())
}

fn prepare_body(ctx: &UnitContext, input: &UnitInput) -> Result<bytes::Bytes, String> {
    let task = &ctx.plan.tasks[input.index as usize];
    let view = TaskView::new(&ctx.manifest, task);
    let config = RequestConfig {
        generation: &view.job.generation,
        ratio: &task.ratio,
        wire_size: view.wire_size(),
        system: task.system_text.as_deref(),
    };
    let current = UserTurn {
        prompt: task.prompt_text.clone(),
        refs: task.refs.clone(),
        images: input.images.iter().map(|(f, _)| f.clone()).collect(),
    };
    build_body(&config, &input.past, &current).map_err(|e| e.to_string())
}

/// Reads a 200 body in memory (a conversation's turn, or one line of a batch's results): image
/// or not, verified, stored. `tier` is the price list the response was billed at.
pub fn process(ctx: &UnitContext, input: &UnitInput, body: &[u8], tier: Tier) -> UnitResult {
    finish(ctx, input, body, tier, Vec::new(), None, Fetched::None)
}

/// A streamed image's file, its bytes all written.
fn complete(mut blob: BlobFile) -> Result<ImageData, crate::fsutil::FsError> {
    blob.file.complete()?;
    Ok(ImageData::Streamed(blob))
}

/// A batch result whose image is a URL: not downloaded there (the lane reads results in one
/// blocking pass); a broken image, retried like one.
pub fn fetch_not_supported(ctx: &UnitContext, input: &UnitInput, fetch: &Fetch) -> UnitResult {
    let reason = format!(
        "a batch result gave its image as a URL ({}); nanobatch does not download those",
        redact_url(&fetch.uri)
    );
    finish(ctx, input, &fetch.skeleton, fetch.tier, Vec::new(), None, Fetched::Failed(reason))
}

/// The image's bytes: decoded in memory, or already in a temp file.
enum ImageData {
    Memory(Vec<u8>),
    Streamed(BlobFile),
}

/// Reads a response (whole, or its skeleton with streamed images in `blobs`) and stores the
/// image with its sidecar.
/// With `store_error`, the image could not be written: only the usage is read.
fn finish(
    ctx: &UnitContext,
    input: &UnitInput,
    body: &[u8],
    tier: Tier,
    mut blobs: Vec<BlobFile>,
    store_error: Option<StoreError>,
    fetched: Fetched,
) -> UnitResult {
    let task = &ctx.plan.tasks[input.index as usize];
    let view = TaskView::new(&ctx.manifest, task);
    let reply = match (parse_reply(body), store_error) {
        (Ok(reply), None) => reply,
        (Ok(reply), Some(error)) => {
            let expected_tokens = view.model.size(&task.size).map_or(0, |s| u64::from(s.output_tokens));
            let (usage, _) = plausible_usage(reply.tokens(expected_tokens), task.estimate);
            return UnitResult::Store { error, usage, cost: view.model.cost(&usage, tier) };
        }
        (Err(_), Some(error)) => return UnitResult::Store { error, usage: TokenCounts::default(), cost: Usd::ZERO },
        (Err(e), None) => return UnitResult::Failed { class: FailureClass::Unknown, error: ApiError::Malformed(e.0) },
    };
    let expected_tokens = view.model.size(&task.size).map_or(0, |s| u64::from(s.output_tokens));
    let (usage, implausible_usage) = plausible_usage(reply.tokens(expected_tokens), task.estimate);
    let cost = view.model.cost(&usage, tier);
    let billed = Billed { usage, cost, tier, implausible_usage, usage_missing: reply.usage.is_none() };
    if let Some(kind) = reply.no_image() {
        return no_image(&reply, kind.reason(), billed);
    }
    let Some(part) = &reply.image else {
        return no_image(&reply, "no image part".into(), billed);
    };
    let data = match (&part.source, fetched) {
        (ImageSource::Uri(_), Fetched::File(blob)) => match complete(blob) {
            Ok(data) => data,
            Err(e) => return UnitResult::Store { error: StoreError::Fs(e), usage, cost },
        },
        (ImageSource::Uri(_), Fetched::Failed(reason)) => return broken(&reply, reason, billed),
        (ImageSource::Uri(_), Fetched::Store(error)) => return UnitResult::Store { error, usage, cost },
        (ImageSource::Uri(uri), Fetched::None) if uri.starts_with("https://") || uri.starts_with("http://") => {
            return UnitResult::Fetch(Box::new(Fetch { uri: uri.clone(), skeleton: body.to_vec(), tier }));
        }
        (ImageSource::Uri(uri), Fetched::None) => {
            let scheme = uri.split(':').next().unwrap_or(uri);
            let reason = format!("the image was given as a `{scheme}:` URI, which nanobatch cannot download");
            return no_image(&reply, reason, billed);
        }
        (ImageSource::Inline(text), _) => match blob_index(text) {
            Some(i) if i < blobs.len() => {
                let blob = blobs.swap_remove(i);
                drop(blobs);
                if !blob.valid {
                    return broken(&reply, "the image data is not valid base64".into(), billed);
                }
                match complete(blob) {
                    Ok(data) => data,
                    Err(e) => return UnitResult::Store { error: StoreError::Fs(e), usage, cost },
                }
            }
            _ => match part.decode() {
                Ok(b) => ImageData::Memory(b),
                Err(e) => return broken(&reply, format!("the image data is not valid base64: {e}"), billed),
            },
        },
    };
    let whole = match &data {
        ImageData::Memory(bytes) => Integrity::check(bytes),
        ImageData::Streamed(blob) => blob.integrity.finish(),
    };
    if let Err(reason) = whole {
        return broken(&reply, reason, billed);
    }
    let head = match &data {
        ImageData::Memory(bytes) => &bytes[..],
        ImageData::Streamed(blob) => &blob.head[..],
    };
    let Some(kind) = media::sniff(head) else {
        return broken(&reply, "the image data is not a known image format".into(), billed);
    };
    let pixels = media::dimensions(head, kind).or_else(|| match &data {
        ImageData::Streamed(blob) => media::file_dimensions(blob.file.path(), kind),
        ImageData::Memory(_) => None,
    });
    let (width, height) = pixels.unwrap_or(task.pixels);
    let size_mismatch = ((width, height) != task.pixels).then_some((width, height));
    let fp = task.fingerprint.to_hex();
    let owner = Owner { id: &task.id, fp: &fp };
    let (blake3, written) = match data {
        ImageData::Memory(bytes) => {
            let blake3 = digest::content_hash(&bytes);
            let sidecar = sidecar_json(ctx, input, &reply, kind, (width, height), &blake3, usage, cost, tier);
            (blake3, ctx.store.write_image(&task.output, kind.extension(), &bytes, &sidecar, owner))
        }
        ImageData::Streamed(blob) => {
            let blake3 = digest::finish(&blob.hasher);
            let sidecar = sidecar_json(ctx, input, &reply, kind, (width, height), &blake3, usage, cost, tier);
            (blake3, ctx.store.commit_image(blob.file, &task.output, kind.extension(), &sidecar, owner))
        }
    };
    let written = match written {
        Ok(w) => w,
        Err(error) => return UnitResult::Store { error, usage, cost },
    };
    if let Some(thumbs) = &ctx.thumbs {
        thumbs.offer(&written.path, &blake3);
    }
    let mut turn = None;
    if ctx.keep_turn[input.index as usize]
        && let Some(raw) = raw_model_content(body)
    {
        let rel = RunDir::turn_rel(&task.fingerprint.to_hex());
        if let Err(error) = ctx.store.write_state(&rel, raw.get().as_bytes()) {
            return UnitResult::Store { error, usage, cost };
        }
        turn = Some(rel);
    }
    UnitResult::Image(Box::new(ImageDone {
        written,
        blake3,
        mime: kind.mime(),
        width,
        height,
        usage,
        cost,
        tier,
        finish_reason: reply.finish_reason.clone(),
        model_version: reply.model_version.clone(),
        response_id: reply.response_id.clone(),
        text: non_empty(&reply.text),
        size_mismatch,
        grounding: reply
            .grounding
            .iter()
            .map(|g| GroundingRecord { uri: g.uri.clone(), title: g.title.clone(), image_uri: g.image_uri.clone() })
            .collect(),
        turn,
        implausible_usage,
    }))
}

/// What a 200 was billed, as the dispatcher records it.
#[derive(Debug, Clone, Copy)]
struct Billed {
    usage: TokenCounts,
    cost: Usd,
    tier: Tier,
    implausible_usage: Option<TokenCounts>,
    usage_missing: bool,
}

/// The reported usage, or the task's estimate in its place when no request could have used
/// that much (with the reported figures, to flag): `u64::MAX` tokens would otherwise become
/// millions of dollars spent, and a budget that stops everything.
fn plausible_usage(reported: TokenCounts, estimate: TokenCounts) -> (TokenCounts, Option<TokenCounts>) {
    if reported.is_plausible() { (reported, None) } else { (estimate, Some(reported)) }
}

fn no_image(reply: &Reply<'_>, reason: String, billed: Billed) -> UnitResult {
    UnitResult::NoImage(Box::new(not_whole(reply, reason, billed)))
}

/// The image came, but not whole.
fn broken(reply: &Reply<'_>, reason: String, billed: Billed) -> UnitResult {
    UnitResult::Broken(Box::new(not_whole(reply, reason, billed)))
}

fn not_whole(reply: &Reply<'_>, reason: String, billed: Billed) -> NoImageDone {
    NoImageDone {
        tier: billed.tier,
        reason,
        finish_reason: reply.finish_reason.clone().or_else(|| reply.block_reason.clone()),
        message: reply.finish_message.as_deref().map(redact_text),
        text: non_empty(&reply.text),
        usage: billed.usage,
        cost: billed.cost,
        model_version: reply.model_version.clone(),
        response_id: reply.response_id.clone(),
        implausible_usage: billed.implausible_usage,
        usage_missing: billed.usage_missing,
    }
}

/// The model's text as kept in the journal and the sidecar: trimmed, bounded, and scrubbed of
/// the key (a proxy may echo the request it forwarded).
fn non_empty(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| redact_text(&t.chars().take(MAX_TEXT).collect::<String>()))
}

#[allow(clippy::too_many_arguments)]
fn sidecar_json(
    ctx: &UnitContext,
    input: &UnitInput,
    reply: &Reply<'_>,
    kind: media::ImageKind,
    pixels: (u32, u32),
    blake3: &str,
    usage: TokenCounts,
    cost: Usd,
    tier: Tier,
) -> Vec<u8> {
    let task = &ctx.plan.tasks[input.index as usize];
    let view = TaskView::new(&ctx.manifest, task);
    let row = &view.job.rows.rows[task.row as usize];
    let fp = task.fingerprint.to_hex();
    let declared = part_declared(reply);
    let text = redact_text(reply.text.trim());
    let mut references: Vec<SidecarRef<'_>> = task
        .refs
        .iter()
        .map(|r| SidecarRef {
            path: &r.shown,
            sha256: hex::encode(r.sha256),
            kind: if r.kind == RefKind::Person { "person" } else { "object" },
            task: None,
        })
        .collect();
    let image_paths: Vec<String> = input.images.iter().map(|(f, _)| f.path.display().to_string()).collect();
    for ((_, id), path) in input.images.iter().zip(&image_paths) {
        references.push(SidecarRef { path, sha256: String::new(), kind: "object", task: Some(id) });
    }
    let sidecar = Sidecar {
        sidecar_version: crate::report::sidecar::SIDECAR_VERSION,
        tool: env!("CARGO_PKG_VERSION"),
        task_id: &task.id,
        fingerprint: &fp,
        job: &view.job.name,
        key: &row.key,
        step: view.step_name(),
        variant: task.variant,
        prompt: &task.prompt_text,
        system: task.system_text.as_deref(),
        variables: view
            .job
            .rows
            .columns
            .iter()
            .zip(row.values.iter())
            .map(|(c, v)| (&**c, v.as_deref().unwrap_or("")))
            .collect(),
        model: &view.model.id,
        model_version: reply.model_version.as_deref(),
        aspect_ratio: &task.ratio,
        image_size: &task.size,
        expected_pixels: task.pixels,
        pixels,
        mime_type: kind.mime(),
        declared_mime_type: declared.filter(|d| *d != kind.mime()),
        blake3,
        references,
        usage,
        cost_usd: cost,
        tier,
        attempt: input.attempt,

        finish_reason: reply.finish_reason.as_deref(),
        response_id: reply.response_id.as_deref(),
        text: &text,
        grounding: reply
            .grounding
            .iter()
            .map(|g| SidecarSource { uri: &g.uri, title: g.title.as_deref(), image_uri: g.image_uri.as_deref() })
            .collect(),
        created: crate::checkpoint::records::now(),
    };
    serde_json::to_vec_pretty(&sidecar).unwrap_or_default()
}

fn part_declared<'a>(reply: &'a Reply<'_>) -> Option<&'a str> {
    reply.image.as_ref().and_then(|i| i.declared_mime.as_deref())
}
