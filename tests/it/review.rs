//! Review: the web app in a real browser (Debian's chromium through chromedriver), marks from the
//! command line, marks surviving a kill, and export.

use std::collections::BTreeMap;
use std::time::Duration;

use fantoccini::Locator;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use nanobatch::mock::MockConfig;

use crate::support::{ChromeDriver, Emulator, ReviewProcess, Workspace, assert_code, stderr};

/// 20 tasks: 10 rows × 2 sizes.
pub fn twenty_tasks() -> String {
    let rows: String = (0..10).map(|i| format!("      - {{ key: \"item-{i:02}\" }}\n")).collect();
    format!(
        "version: 1\nname: review-me\ndefaults:\n  model: gemini-3.1-flash-image-preview\n  modalities: [image]\njobs:\n  grid:\n    vars:\n{rows}    prompt: \"item {{{{ key }}}}\"\n    sizes: [\"1:1@512\", \"16:9@512\"]\n"
    )
}

fn workspace_with_a_run() -> (Workspace, Emulator) {
    let ws = Workspace::new();
    ws.write("m.yaml", &twenty_tasks());
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "m.yaml", &["-j", "8"]), 0);
    (ws, emulator)
}

/// Task id → review mark in report.json (`None`: pending).
fn report_marks(ws: &Workspace) -> BTreeMap<String, Option<String>> {
    let out = ws.cmd(None).args(["report", "out"]).output().unwrap();
    assert_code(&out, 0);
    ws.report()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_owned(), t["review"]["mark"].as_str().map(str::to_owned)))
        .collect()
}

async fn press(client: &fantoccini::Client, key: char) {
    let keys =
        KeyActions::new("keyboard".into()).then(KeyAction::Down { value: key }).then(KeyAction::Up { value: key });
    client.perform_actions(keys).await.unwrap();
}

async fn wait_for(client: &fantoccini::Client, css: &str) -> fantoccini::elements::Element {
    match client.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css(css)).await {
        Ok(element) => element,
        Err(e) => panic!("waited for `{css}`: {e}\n{}", client.source().await.unwrap_or_default()),
    }
}

async fn mark_of(client: &fantoccini::Client, pos: usize) -> String {
    let cell = wait_for(client, &format!(".cell[data-pos='{pos}']")).await;
    cell.attr("data-mark").await.unwrap().unwrap()
}

/// The colour of the pixel at (x, y) of a PNG screenshot.
fn pixel(png: &image::RgbaImage, x: f64, y: f64) -> [u8; 3] {
    let p = png.get_pixel(x as u32, y as u32).0;
    [p[0], p[1], p[2]]
}

fn near(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 24)
}

#[test]
fn the_review_app_takes_marks_from_keys_and_clicks_and_they_survive_a_reload() {
    let (ws, _emulator) = workspace_with_a_run();
    let Some(driver) = ChromeDriver::start() else { return };
    let mut server = ReviewProcess::start(ws.path(), "out");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let screenshot = runtime.block_on(async {
        let client = driver.session().await;
        client.goto(&server.url).await.unwrap();
        wait_for(&client, "body[data-ready='1']").await;
        assert_eq!(client.find_all(Locator::Css(".cell")).await.unwrap().len(), 20, "all 20 cells on one screen");
        assert_eq!(client.title().await.unwrap(), "review-me — nanobatch review");

        // Keyboard: focus the first cell with a click, reject it; the next one too.
        client.find(Locator::Css(".cell[data-pos='0'] .thumb")).await.unwrap().click().await.unwrap();
        press(&client, 'r').await;
        wait_for(&client, ".cell[data-pos='0'][data-mark='rejected']").await;
        press(&client, Key::Right.into()).await;
        press(&client, 'r').await;
        wait_for(&client, ".cell[data-pos='1'][data-mark='rejected']").await;
        // Clicks: approve the third and fourth.
        for pos in [2, 3] {
            let approve = wait_for(&client, &format!(".cell[data-pos='{pos}'] button.approve")).await;
            approve.click().await.unwrap();
            wait_for(&client, &format!(".cell[data-pos='{pos}'][data-mark='approved']")).await;
        }
        // Keyboard again: three to the right of the focused second cell, approve.
        for _ in 0..3 {
            press(&client, Key::Right.into()).await;
        }
        wait_for(&client, ".cell[data-pos='4'].focus").await;
        press(&client, 'a').await;
        wait_for(&client, ".cell[data-pos='4'][data-mark='approved']").await;
        wait_for(&client, "body[data-approved='3'][data-rejected='2']").await;

        // A reload shows what the server has on disk.
        client.refresh().await.unwrap();
        wait_for(&client, "body[data-ready='1']").await;
        let mut marks = Vec::new();
        for pos in 0..20 {
            marks.push(mark_of(&client, pos).await);
        }
        assert_eq!(&marks[..6], ["rejected", "rejected", "approved", "approved", "approved", "pending"]);
        assert!(marks[5..].iter().all(|m| m == "pending"), "{marks:?}");

        // The screenshot shows the marks: red frame on a rejected cell, green on an approved one,
        // and pictures (many colours), not a blank page.
        let png = image::load_from_memory(&client.screenshot().await.unwrap()).unwrap().to_rgba8();
        let mut rects = Vec::new();
        for pos in [0, 2, 5] {
            let cell = client.find(Locator::Css(&format!(".cell[data-pos='{pos}']"))).await.unwrap();
            rects.push(cell.rectangle().await.unwrap());
        }
        client.close().await.unwrap();
        (png, rects)
    });
    let (png, rects) = screenshot;
    assert!(png.width() == 1280 && png.height() > 600, "the viewport: {}x{}", png.width(), png.height());
    let frame = |(x, y, _w, h): (f64, f64, f64, f64)| pixel(&png, x + 2.0, y + h / 2.0);
    assert!(near(frame(rects[0]), [180, 35, 24]), "rejected: red frame, got {:?}", frame(rects[0]));
    assert!(near(frame(rects[1]), [18, 128, 92]), "approved: green frame, got {:?}", frame(rects[1]));
    assert!(!near(frame(rects[2]), [180, 35, 24]) && !near(frame(rects[2]), [18, 128, 92]), "pending: neither");
    let colours: std::collections::HashSet<[u8; 4]> = png.pixels().map(|p| p.0).collect();
    assert!(colours.len() > 500, "thumbnails are drawn ({} colours)", colours.len());

    // report.json, made from the run directory alone after the server is gone, has the marks.
    server.kill();
    let marks = report_marks(&ws);
    let count = |m: &str| marks.values().filter(|v| v.as_deref() == Some(m)).count();
    assert_eq!((count("approved"), count("rejected")), (3, 2), "{marks:?}");
    assert_eq!(marks["grid/item-00/1:1@512"].as_deref(), Some("rejected"));
    assert_eq!(ws.report()["review"], serde_json::json!({"approved": 3, "rejected": 2, "pending": 15}));
}

/// POSTs one mark; the answer's status.
fn post_mark(url: &str, image: &str, mark: &str) -> Option<u16> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{url}api/marks"))
            .json(&serde_json::json!({"marks": [{"image": image, "mark": mark}]}))
            .send()
            .await
            .ok()?;
        Some(response.status().as_u16())
    })
}

fn images_of(url: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let page: serde_json::Value = runtime
        .block_on(async { reqwest::get(format!("{url}api/tasks?limit=100")).await.unwrap().json().await.unwrap() });
    page["items"].as_array().unwrap().iter().map(|i| i["image"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_kill_during_review_loses_no_confirmed_mark() {
    let (ws, _emulator) = workspace_with_a_run();
    let mut server = ReviewProcess::start(ws.path(), "out");
    let images = images_of(&server.url);
    assert_eq!(images.len(), 20);
    // Marks go in one after another while the server is killed; every one answered 200 must
    // be on disk.
    let url = server.url.clone();
    let marker = std::thread::spawn(move || {
        let mut confirmed = Vec::new();
        for (n, image) in images.iter().enumerate().cycle().take(5000) {
            let mark = if n % 2 == 0 { "rejected" } else { "approved" };
            match post_mark(&url, image, mark) {
                Some(200) => confirmed.push((image.clone(), mark)),
                Some(other) => panic!("mark answered {other}"),
                None => break,
            }
        }
        confirmed
    });
    std::thread::sleep(Duration::from_millis(300));
    server.kill();
    let confirmed = marker.join().unwrap();
    assert!(!confirmed.is_empty() && confirmed.len() < 5000, "the kill came mid-review ({} marks)", confirmed.len());
    // The last confirmed mark of each image is the one in force.
    let mut expected: BTreeMap<String, &str> = BTreeMap::new();
    for (image, mark) in &confirmed {
        expected.insert(image.clone(), mark);
    }
    let log = std::fs::read_to_string(ws.out().join(".nanobatch/review.jsonl")).unwrap();
    let mut on_disk: BTreeMap<String, String> = BTreeMap::new();
    for line in log.lines().skip(1) {
        let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        on_disk.insert(record["image"].as_str().unwrap().to_owned(), record["mark"].as_str().unwrap().to_owned());
    }
    for image in expected.keys() {
        assert!(on_disk.contains_key(image), "a confirmed mark of {image} is on disk");
    }
    // Marks went one at a time: only the one in flight at the kill may be on disk unconfirmed.
    let differ = expected.iter().filter(|(image, mark)| on_disk[*image] != **mark).count();
    assert!(differ <= 1, "{differ} images show another mark than their last confirmed one");
    // The run directory reads back whole after the kill.
    let status = ws.cmd(None).args(["status", "out", "--json"]).output().unwrap();
    assert_code(&status, 0);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let review = &status["review"];
    assert_eq!(
        review["approved"].as_u64().unwrap()
            + review["rejected"].as_u64().unwrap()
            + review["pending"].as_u64().unwrap(),
        20
    );
}

#[test]
fn mark_takes_ids_and_paths_reports_every_bad_name_and_shows_in_status() {
    let (ws, _emulator) = workspace_with_a_run();
    let mark = |args: &[&str]| ws.cmd(None).arg("mark").arg("out").args(args).output().unwrap();
    // Bad names: all reported, nothing written.
    let out = mark(&["--reject", "grid/item-00/1:1@512", "grid/item-99/1:1@512", "nope.png"]);
    assert_code(&out, 3);
    let text = stderr(&out);
    assert!(text.contains("`grid/item-99/1:1@512`") && text.contains("did you mean"), "{text}");
    assert!(text.contains("`nope.png`"), "{text}");
    assert!(!ws.out().join(".nanobatch/review.jsonl").exists(), "nothing written");
    // An id, a path relative to the run directory, and a path from here.
    let path_from_here = {
        let images = crate::support::images(&ws.out());
        images[0].strip_prefix(ws.path()).unwrap().display().to_string()
    };
    assert_code(&mark(&["--reject", "--note", "too dark", "grid/item-03/1:1@512", "grid/item-04-16x9-512.png"]), 0);
    assert_code(&mark(&["--approve", &path_from_here]), 0);
    let marks = report_marks(&ws);
    assert_eq!(marks.values().filter(|m| m.as_deref() == Some("rejected")).count(), 2, "{marks:?}");
    assert_eq!(marks.values().filter(|m| m.as_deref() == Some("approved")).count(), 1, "{marks:?}");
    let note =
        ws.report()["tasks"].as_array().unwrap().iter().find(|t| t["id"] == "grid/item-03/1:1@512").unwrap()["review"]
            ["note"]
            .clone();
    assert_eq!(note, "too dark");
    // Approving keeps the note; clearing drops mark and note.
    assert_code(&mark(&["--approve", "grid/item-03/1:1@512"]), 0);
    assert_code(&mark(&["--clear", "grid/item-04/16:9@512"]), 0);
    let status = ws.cmd(None).args(["status", "out"]).output().unwrap();
    assert_code(&status, 0);
    let text = crate::support::stdout(&status);
    assert!(text.contains("review: 2 approved · 0 rejected · 18 to review"), "{text}");
    let report = ws.report();
    let item3 = report["tasks"].as_array().unwrap().iter().find(|t| t["id"] == "grid/item-03/1:1@512").unwrap();
    assert_eq!(item3["review"]["mark"], "approved");
    assert_eq!(item3["review"]["note"], "too dark");
    // The HTML report shows the marks.
    let html = std::fs::read_to_string(ws.out().join("report.html")).unwrap();
    assert!(html.contains("mark-approved"), "report.html shows marks");
}

#[test]
fn export_approved_zip_holds_exactly_the_approved_images_and_a_csv_that_parses() {
    let (ws, _emulator) = workspace_with_a_run();
    let approved = ["grid/item-01/1:1@512", "grid/item-05/16:9@512", "grid/item-09/1:1@512"];
    let out = ws
        .cmd(None)
        .args(["mark", "out", "--approve", "--note", "ship it, \"as is\""])
        .args(approved)
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert_code(&ws.cmd(None).args(["mark", "out", "--reject", "grid/item-02/1:1@512"]).output().unwrap(), 0);

    let out = ws.cmd(None).args(["export", "out", "approved.zip", "--approved", "--zip"]).output().unwrap();
    assert_code(&out, 0);
    let file = std::fs::File::open(ws.path().join("approved.zip")).unwrap();
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
    names.sort();
    let expected_images = ["grid/item-01-1x1-512.png", "grid/item-05-16x9-512.png", "grid/item-09-1x1-512.png"];
    let mut expected: Vec<String> = expected_images.iter().map(|s| (*s).to_owned()).collect();
    expected.extend(expected_images.iter().map(|s| s.replace(".png", ".json")));
    expected.push("export.csv".into());
    expected.sort();
    assert_eq!(names, expected);
    for image in expected_images {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut zip.by_name(image).unwrap(), &mut bytes).unwrap();
        assert_eq!(bytes, std::fs::read(ws.out().join(image)).unwrap(), "{image} is the run's image");
    }
    let mut csv_text = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("export.csv").unwrap(), &mut csv_text).unwrap();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(headers, ["id", "key", "job", "model", "size", "path", "cost_usd", "mark", "note"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    let paths: Vec<&str> = rows.iter().map(|r| &r[5]).collect();
    assert_eq!(paths, expected_images);
    assert!(rows.iter().all(|r| &r[7] == "approved" && &r[8] == "ship it, \"as is\"" && &r[2] == "grid"));
    assert_eq!(&rows[1][1], "item-05");
    assert_eq!(&rows[1][4], "16:9@512");
    let report = ws.report();
    let cost =
        report["tasks"].as_array().unwrap().iter().find(|t| t["id"] == approved[0]).unwrap()["cost_usd"]["actual"]
            .as_f64()
            .unwrap();
    assert!((rows[0][6].parse::<f64>().unwrap() - cost).abs() < 1e-9, "the task's cost");

    // A second export to the same file is refused; --all into a directory takes every image.
    let again = ws.cmd(None).args(["export", "out", "approved.zip", "--zip"]).output().unwrap();
    assert_code(&again, 3);
    assert_code(&ws.cmd(None).args(["export", "out", "everything", "--all"]).output().unwrap(), 0);
    assert_eq!(crate::support::images(&ws.path().join("everything")).len(), 20);
    let csv_all = std::fs::read_to_string(ws.path().join("everything/export.csv")).unwrap();
    assert_eq!(csv_all.lines().count(), 21);
    assert!(csv_all.contains(",rejected,") && csv_all.contains(",pending,"));
    // Exporting into the run directory is refused.
    assert_code(&ws.cmd(None).args(["export", "out", "out/export"]).output().unwrap(), 3);
}

#[test]
fn reroll_rejected_sends_exactly_the_rejected_tasks_and_leaves_them_pending_review() {
    // The same emulator throughout: it answers a request again with other bytes, as a model does.
    let (ws, emulator) = workspace_with_a_run();
    let rejected = ["grid/item-03/1:1@512", "grid/item-07/16:9@512"];
    assert_code(
        &ws.cmd(None).args(["mark", "out", "--reject", "--note", "off-brand"]).args(rejected).output().unwrap(),
        0,
    );
    assert_code(&ws.cmd(None).args(["mark", "out", "--approve", "grid/item-00/1:1@512"]).output().unwrap(), 0);
    let before = ws.report();
    let task = |report: &serde_json::Value, id: &str| {
        report["tasks"].as_array().unwrap().iter().find(|t| t["id"] == id).unwrap().clone()
    };
    let spent_before = before["totals"]["cost_usd"]["actual"].as_f64().unwrap();

    // The plan prices exactly the two re-rolls.
    let plan = ws.cmd(None).args(["plan", "m.yaml", "-o", "out", "--reroll-rejected", "--json"]).output().unwrap();
    assert_code(&plan, 0);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["to_run"], 2, "{plan:#}");
    assert_eq!(plan["reasons"]["re-roll (rejected)"], 2);
    let estimate: f64 = rejected.iter().map(|id| task(&before, id)["cost_usd"]["estimated"].as_f64().unwrap()).sum();
    let priced = plan["cost"]["remaining_interactive_usd"].as_f64().unwrap();
    assert!((priced - estimate).abs() < 1e-9, "plan prices the re-rolls: {priced} vs {estimate}");
    // Without the flag nothing is to run.
    let plain = ws.cmd(None).args(["plan", "m.yaml", "-o", "out", "--json"]).output().unwrap();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&plain.stdout).unwrap()["to_run"], 0);

    // The budget applies: already spent more than this allows, nothing is sent.
    let sent_before = emulator.stats().requests;
    let tight = format!("{}", spent_before + estimate / 4.0);
    let stopped = ws.run(&emulator, "m.yaml", &["--reroll-rejected", "--max-cost", &tight]);
    assert_code(&stopped, 4);
    assert_eq!(emulator.stats().requests, sent_before, "the budget guards re-rolls too");

    // The re-roll: exactly the rejected tasks are requested, once each.
    let out = ws.run(&emulator, "m.yaml", &["--reroll-rejected"]);
    assert_code(&out, 0);
    let stats = emulator.stats();
    assert_eq!(stats.requests, sent_before + 2, "{}", stderr(&out));
    let mut twice: Vec<&str> =
        stats.fingerprints.values().filter(|f| f.count == 2).map(|f| f.prompt.as_str()).collect();
    twice.sort_unstable();
    assert_eq!(twice.len(), 2, "exactly two requests were sent again");
    assert!(twice[0].contains("item item-03") && twice[1].contains("item item-07"), "{twice:?}");

    // New images, pending review; the approved one keeps its mark; the old images are kept.
    let after = ws.report();
    for id in rejected {
        let (old, new) = (task(&before, id), task(&after, id));
        assert_eq!(new["status"], "succeeded");
        assert!(new.get("review").is_none(), "{id}: the new image is pending review: {new:#}");
        assert_eq!(old["review"]["mark"], "rejected");
    }
    assert_eq!(task(&after, "grid/item-00/1:1@512")["review"]["mark"], "approved");
    assert_eq!(after["review"], serde_json::json!({"approved": 1, "rejected": 0, "pending": 19}));
    let kept = crate::support::images(&ws.out().join(".nanobatch/superseded"));
    assert_eq!(kept.len(), 2, "the rejected images are kept: {kept:?}");

    // A plain run afterwards sends nothing.
    let again = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&again, "m.yaml", &[]), 0);
    assert_eq!(again.stats().requests, 0);

    // The app shows both versions of a re-rolled task, the earlier one with its mark.
    let server = ReviewProcess::start(ws.path(), "out");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let page: serde_json::Value = runtime.block_on(async {
        reqwest::get(format!("{}api/tasks?q=item-03&size=1:1@512", server.url)).await.unwrap().json().await.unwrap()
    });
    let i = page["items"][0]["i"].as_u64().unwrap();
    assert_eq!(page["items"][0]["mark"], "pending");
    let detail: serde_json::Value = runtime
        .block_on(async { reqwest::get(format!("{}api/task/{i}", server.url)).await.unwrap().json().await.unwrap() });
    let versions = detail["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{detail:#}");
    assert_eq!(versions[0]["mark"], "rejected");
    assert_ne!(versions[0]["image"], detail["image"]);
    for image in [&versions[0]["image"], &detail["image"]] {
        let status = runtime.block_on(async {
            reqwest::get(format!("{}thumb/{}", server.url, image.as_str().unwrap())).await.unwrap().status()
        });
        assert_eq!(status, 200, "both versions are served");
    }
}

/// The first screen of a large run (BENCHMARKS.md): `NANOBATCH_REVIEW_BENCH_DIR` names a run
/// directory (else one of `NANOBATCH_REVIEW_BENCH_TASKS`, default 5,000, is made against the
/// emulator). `NANOBATCH_BIN` names the binary to measure (the release build). Prints, for 5 rounds, the time from starting `nanobatch review` to its URL (the
/// run directory read), and from navigation to the first screen's thumbnails all drawn.
#[test]
#[ignore = "a benchmark: cargo nextest run --run-ignored only -E 'test(review_first_screen)'"]
fn review_first_screen_benchmark() {
    let ws = Workspace::new();
    let dir = match std::env::var("NANOBATCH_REVIEW_BENCH_DIR") {
        Ok(dir) => std::path::PathBuf::from(dir),
        Err(_) => {
            let tasks: usize =
                std::env::var("NANOBATCH_REVIEW_BENCH_TASKS").ok().and_then(|n| n.parse().ok()).unwrap_or(5000);
            let rows: String = (0..tasks / 2).map(|i| format!("      - {{ key: \"sku-{i:05}\" }}\n")).collect();
            ws.write(
                "m.yaml",
                &format!(
                    "version: 1\nname: bench\ndefaults:\n  model: gemini-3.1-flash-image-preview\n  modalities: [image]\njobs:\n  grid:\n    vars:\n{rows}    prompt: \"item {{{{ key }}}}\"\n    sizes: [\"1:1@512\", \"16:9@512\"]\n"
                ),
            );
            let emulator = Emulator::start(MockConfig::default());
            assert_code(&ws.run(&emulator, "m.yaml", &["-j", "64"]), 0);
            ws.out()
        }
    };
    let Some(driver) = ChromeDriver::start() else { return };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (mut starts, mut screens) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let server = ReviewProcess::start(&dir, ".");
        starts.push(started.elapsed().as_secs_f64() * 1000.0);
        let ms: f64 = runtime.block_on(async {
            let client = driver.session().await;
            client.goto(&server.url).await.unwrap();
            let body = wait_for(&client, "body[data-first-screen-ms]").await;
            let cells = client.find_all(Locator::Css(".cell img")).await.unwrap().len();
            assert!(cells >= 20, "a screen of thumbnails ({cells})");
            let ms = body.attr("data-first-screen-ms").await.unwrap().unwrap().parse().unwrap();
            client.close().await.unwrap();
            ms
        });
        screens.push(ms);
        drop(server);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (start, screen) = (median(&mut starts), median(&mut screens));
    let line = format!(
        "review bench: start to URL {starts:?} ms (median {start:.0}); navigation to first screen {screens:?} ms (median {screen:.0})"
    );
    std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes()).unwrap();
}
