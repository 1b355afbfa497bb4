#![allow(clippy::print_stderr)]
//! The physical-limit reference for the end-to-end benchmark (`benches/e2e.py`): the least a
//! client can do with the emulator's image responses. It sends `N` requests with `J` in flight,
//! receives each body, finds the image's base64 without a JSON parser, decodes it with the same
//! SIMD decoder as nanobatch and writes it to a file with direct I/O (`--buffered`: through the
//! page cache). No planning, no journal, no verification, no hashing, no fsync. nanobatch's CPU
//! per image divided by this loop's is the published overhead ratio.
//!
//! `cargo run --release --example reference_loop -- BASE_URL N J OUT_DIR [MODEL RATIO SIZE]`

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    // `--discard`: receive bodies and drop them (measures the emulator, not the client).
    let discard = args.iter().any(|a| a == "--discard");
    // `--buffered`: write through the page cache instead of with direct I/O.
    let buffered = args.iter().any(|a| a == "--buffered");
    args.retain(|a| a != "--discard" && a != "--buffered");
    if args.len() < 5 {
        eprintln!("usage: reference_loop BASE_URL N J OUT_DIR [MODEL RATIO SIZE]");
        std::process::exit(2);
    }
    let base = args[1].trim_end_matches('/').to_owned();
    let n: usize = args[2].parse().expect("N");
    let j: usize = args[3].parse().expect("J");
    let out = PathBuf::from(&args[4]);
    let model = args.get(5).cloned().unwrap_or_else(|| "gemini-3.1-flash-image-preview".into());
    let ratio = args.get(6).cloned().unwrap_or_else(|| "1:1".into());
    let size = args.get(7).cloned().unwrap_or_else(|| "1K".into());
    std::fs::create_dir_all(&out).expect("output directory");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let failures = runtime.block_on(run(base, n, j, out, model, ratio, size, discard, buffered));
    if failures > 0 {
        eprintln!("{failures} requests failed");
        std::process::exit(1);
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    base: String,
    n: usize,
    j: usize,
    out: PathBuf,
    model: String,
    ratio: String,
    size: String,
    discard: bool,
    buffered: bool,
) -> usize {
    let client = reqwest::Client::builder().pool_max_idle_per_host(j).build().expect("client");
    let url = format!("{base}/v1beta/models/{model}:generateContent");
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::with_capacity(j);
    for _ in 0..j {
        let (client, url, next, failed, out) = (client.clone(), url.clone(), next.clone(), failed.clone(), out.clone());
        let (ratio, size) = (ratio.clone(), size.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                if !fetch_one(&client, &url, i, &ratio, &size, &out, discard, buffered).await {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    failed.load(Ordering::Relaxed)
}

async fn fetch_one(
    client: &reqwest::Client,
    url: &str,
    i: usize,
    ratio: &str,
    size: &str,
    out: &std::path::Path,
    discard: bool,
    buffered: bool,
) -> bool {
    let body = format!(
        r#"{{"contents":[{{"role":"user","parts":[{{"text":"reference product {i}"}}]}}],"generationConfig":{{"responseModalities":["IMAGE"],"imageConfig":{{"aspectRatio":"{ratio}","imageSize":"{size}"}}}}}}"#
    );
    let response = match client.post(url).header("x-goog-api-key", "reference").body(body).send().await {
        Ok(r) if r.status().is_success() => r,
        _ => return false,
    };
    if discard {
        let mut response = response;
        let mut total = 0;
        while let Ok(Some(chunk)) = response.chunk().await {
            total += chunk.len();
        }
        return total > 0;
    }
    let Ok(bytes) = response.bytes().await else { return false };
    let path = out.join(format!("{i}.png"));
    tokio::task::spawn_blocking(move || {
        let Some(b64) = image_base64(&bytes) else { return false };
        if buffered {
            let Ok(image) = base64_simd::STANDARD.decode_to_vec(b64) else { return false };
            return std::fs::write(path, image).is_ok();
        }
        write_direct(&path, b64).is_ok()
    })
    .await
    .unwrap_or(false)
}

/// Decodes into a 4 KiB-aligned buffer and writes it with direct I/O (the padding of the last
/// block cut off after): the cheapest way to put the bytes on disk, as nanobatch does.
fn write_direct(path: &std::path::Path, b64: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    const ALIGN: usize = 4096;
    let simd = base64_simd::STANDARD;
    let len = simd.decoded_length(b64).map_err(std::io::Error::other)?;
    let padded = len.next_multiple_of(ALIGN);
    let mut raw = vec![0u8; padded + ALIGN];
    let start = raw.as_ptr().align_offset(ALIGN);
    let buffer = &mut raw[start..start + padded];
    simd.decode(b64, base64_simd::Out::from_slice(&mut buffer[..len])).map_err(std::io::Error::other)?;
    let direct = rustix::fs::OFlags::DIRECT.bits() as i32;
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).custom_flags(direct).open(path)?;
    std::io::Write::write_all(&mut file, buffer)?;
    file.set_len(len as u64)
}

/// The JSON string value after the `"data"` key: the image. SIMD searches (memchr), as fast
/// as finding it can be; a byte-at-a-time scan would cost this loop ~0.5 ms per 1K image.
fn image_base64(body: &[u8]) -> Option<&[u8]> {
    let key = b"\"data\":";
    let start = memchr::memmem::find(body, key)? + key.len();
    let open = start + memchr::memchr(b'"', &body[start..])? + 1;
    let len = memchr::memchr(b'"', &body[open..])?;
    Some(&body[open..open + len])
}
