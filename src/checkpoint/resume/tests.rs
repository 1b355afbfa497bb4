//! Resume is a pure function: property tests over random plans and random journals, cut at
//! every point and with a torn last line.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use proptest::prelude::*;

use super::{Decision, FileCheck, FileState, JournalState, PlannedTask, decide};
use crate::catalog::{Tier, TokenCounts, Usd};
use crate::checkpoint::journal;
use crate::checkpoint::records::{
    AttemptRecord, FORMAT_NAME, FORMAT_VERSION, Header, OutputRecord, Record, SentRecord, TaskRecord, TaskStatus,
};
use crate::plan::fingerprint::Parts;

/// Every recorded output exists unchanged, except those listed as missing.
struct Files {
    missing: HashSet<String>,
}

impl FileCheck for Files {
    fn check(&self, output: &OutputRecord) -> FileState {
        if self.missing.contains(&output.path) { FileState::Missing } else { FileState::Ok }
    }
}

#[derive(Debug, Clone)]
struct Case {
    deps: Vec<Vec<u32>>,
    /// Per task, the outcomes of its attempts (true = success), in execution order.
    script: Vec<(u32, Vec<bool>)>,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..24)
        .prop_flat_map(|n| {
            let deps = (0..n)
                .map(|i| {
                    if i == 0 { Just(Vec::new()).boxed() } else { proptest::collection::vec(0..i as u32, 0..3).boxed() }
                })
                .collect::<Vec<_>>();
            let attempts = proptest::collection::vec(proptest::collection::vec(any::<bool>(), 1..4), n);
            (deps, attempts)
        })
        .prop_map(|(deps, attempts)| {
            let deps: Vec<Vec<u32>> = deps
                .into_iter()
                .map(|mut d| {
                    d.sort_unstable();
                    d.dedup();
                    d
                })
                .collect();
            // Execute in order: a task runs only if its dependencies succeeded.
            let mut succeeded = vec![false; deps.len()];
            let mut script = Vec::new();
            for (i, outcomes) in attempts.into_iter().enumerate() {
                if deps[i].iter().all(|d| succeeded[*d as usize]) {
                    let mut tries = Vec::new();
                    for ok in outcomes {
                        tries.push(ok);
                        if ok {
                            succeeded[i] = true;
                            break;
                        }
                    }
                    script.push((i as u32, tries));
                }
            }
            Case { deps, script }
        })
}

fn id(i: u32) -> String {
    format!("job/t{i}/1:1@1K")
}

fn fp(i: u32) -> String {
    format!("{i:064x}")
}

fn journal_for(case: &Case) -> Vec<Record> {
    let mut out = Vec::new();
    for (task, tries) in &case.script {
        for (n, ok) in tries.iter().enumerate() {
            let n = n as u32 + 1;
            out.push(Record::Sent(SentRecord {
                id: id(*task),
                fp: fp(*task),
                n,
                estimate_usd: Usd::from_dollars(0.05),
                at: "t".into(),
            }));
            if *ok {
                out.push(Record::task(task_record(*task, n)));
            } else if n < 3 {
                out.push(Record::attempt(AttemptRecord {
                    id: id(*task),
                    fp: fp(*task),
                    n,
                    class: "server_error".into(),
                    http: Some(503),
                    message: "overloaded".into(),
                    possibly_billed_usd: Usd::ZERO,
                    billed_usd: Usd::ZERO,
                    usage: None,
                    retry_in_ms: Some(10),
                    latency_ms: 1,
                    at: "t".into(),
                }));
            } else {
                out.push(Record::task(TaskRecord {
                    status: TaskStatus::Failed,
                    outputs: Vec::new(),
                    ..task_record(*task, n)
                }));
            }
        }
    }
    out
}

fn task_record(task: u32, attempts: u32) -> TaskRecord {
    TaskRecord {
        id: id(task),
        fp: fp(task),
        parts: Parts::default().to_hex(),
        status: TaskStatus::Succeeded,
        attempts,
        outputs: vec![OutputRecord {
            path: format!("job/t{task}.png"),
            sidecar: format!("job/t{task}.json"),
            blake3: "0".repeat(64),
            sha256: String::new(),
            bytes: 1,
            mtime_ns: 1,
            mime: "image/png".into(),
            width: 1,
            height: 1,
        }],
        turn: None,
        usage: TokenCounts::default(),
        cost_usd: Usd::from_dollars(0.05),
        tier: Tier::Interactive,
        finish_reason: Some("STOP".into()),
        error: None,
        model_version: None,
        response_id: None,
        text: None,
        size_mismatch: None,
        usage_reported: None,
        grounding: Vec::new(),
        latency_ms: 1,
        at: "t".into(),
    }
}

fn decisions(case: &Case, records: &[Record], files: &Files) -> Vec<Decision> {
    let ids: Vec<String> = (0..case.deps.len() as u32).map(id).collect();
    let fps: Vec<String> = (0..case.deps.len() as u32).map(fp).collect();
    let outputs: Vec<String> = (0..case.deps.len() as u32).map(|i| format!("job/t{i}")).collect();
    let planned: Vec<PlannedTask<'_>> = (0..case.deps.len())
        .map(|i| PlannedTask {
            id: &ids[i],
            fp: &fps[i],
            parts: Parts::default(),
            output: &outputs[i],
            deps: &case.deps[i],
        })
        .collect();
    decide(&planned, &JournalState::from_records(records), files, false)
}

fn bytes_of(records: &[Record]) -> Vec<u8> {
    let header = Header { format: FORMAT_NAME.into(), version: FORMAT_VERSION, tool: "t".into(), created: "t".into() };
    let mut out = serde_json::to_vec(&header).unwrap();
    out.push(b'\n');
    for r in records {
        out.extend(serde_json::to_vec(r).unwrap());
        out.push(b'\n');
    }
    out
}

fn done_set(d: &[Decision]) -> HashSet<usize> {
    d.iter().enumerate().filter(|(_, d)| matches!(d, Decision::Done { .. })).map(|(i, _)| i).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_prefix_and_torn_tail_gives_a_consistent_outstanding_set(case in case(), missing in proptest::collection::vec(0u32..24, 0..3)) {
        let records = journal_for(&case);
        let files = Files { missing: missing.iter().map(|i| format!("job/t{i}.png")).collect() };
        let mut previous_done: HashSet<usize> = HashSet::new();
        for k in 0..=records.len() {
            let prefix = &records[..k];
            let d = decisions(&case, prefix, &files);
            let done = done_set(&d);
            let succeeded: HashMap<String, ()> = prefix.iter().filter_map(|r| match r {
                Record::Task(t) if t.status == TaskStatus::Succeeded => Some((t.id.clone(), ())),
                _ => None,
            }).collect();
            for (i, decision) in d.iter().enumerate() {
                let output = format!("job/t{i}.png");
                let present = !files.missing.contains(&output);
                let deps_ok = case.deps[i].iter().all(|dep| matches!(d[*dep as usize], Decision::Done { .. }));
                match decision {
                    // Done means: a success in the journal, its output on disk, its inputs done.
                    Decision::Done { .. } => {
                        prop_assert!(succeeded.contains_key(&id(i as u32)));
                        prop_assert!(present);
                        prop_assert!(deps_ok);
                    }
                    // A success whose inputs are done and whose output exists is never re-run.
                    Decision::Run(_) => prop_assert!(
                        !(succeeded.contains_key(&id(i as u32)) && deps_ok && present)
                    ),
                    Decision::Failed { .. } => prop_assert!(!succeeded.contains_key(&id(i as u32))),
                }
            }
            // More journal never un-does a task (with the same files).
            prop_assert!(previous_done.is_subset(&done));
            previous_done = done;

            // A torn line after the prefix changes nothing.
            let mut bytes = bytes_of(prefix);
            if let Some(next) = records.get(k) {
                let line = serde_json::to_vec(next).unwrap();
                bytes.extend_from_slice(&line[..line.len() / 2]);
            } else {
                bytes.extend_from_slice(b"{\"t\":\"ta");
            }
            let parsed = journal::parse(Path::new("j"), &bytes).unwrap();
            prop_assert_eq!(parsed.records.len(), k);
            prop_assert_eq!(parsed.notes.len(), 1);
            prop_assert_eq!(decisions(&case, &parsed.records, &files), d);
        }
    }

    #[test]
    fn unanswered_requests_count_as_possibly_billed(case in case()) {
        let records = journal_for(&case);
        // Cut right after each `sent`: that request is unanswered.
        for (k, r) in records.iter().enumerate() {
            if let Record::Sent(s) = r {
                let state = JournalState::from_records(&records[..=k]);
                prop_assert!(state.unanswered.contains_key(&(s.fp.clone(), s.n)));
                prop_assert!(state.possibly_billed >= s.estimate_usd);
            }
        }
        let full = JournalState::from_records(&records);
        prop_assert!(full.unanswered.is_empty());
        prop_assert_eq!(full.possibly_billed, Usd::ZERO);
    }
}

#[test]
fn a_changed_fingerprint_says_what_changed() {
    let mut r = task_record(0, 1);
    r.parts = Parts { prompt: 1, refs: 2, config: 3, upstream: 4 }.to_hex();
    let state = JournalState::from_records(&[Record::task(r)]);
    let other_fp = fp(99);
    let planned = [PlannedTask {
        id: "job/t0/1:1@1K",
        fp: &other_fp,
        parts: Parts { prompt: 9, refs: 2, config: 3, upstream: 4 },
        output: "job/t0",
        deps: &[],
    }];
    let d = decide(&planned, &state, &Files { missing: HashSet::new() }, false);
    assert_eq!(d, vec![Decision::Run(super::Reason::Changed(vec!["prompt changed"]))]);
}

#[test]
fn a_success_is_found_by_fingerprint_when_the_id_changed() {
    let state = JournalState::from_records(&[Record::task(task_record(0, 1))]);
    let the_fp = fp(0);
    let planned = [PlannedTask {
        id: "job/t0/1:1@1K/gemini-x",
        fp: &the_fp,
        parts: Parts::default(),
        output: "elsewhere/t0",
        deps: &[],
    }];
    let d = decide(&planned, &state, &Files { missing: HashSet::new() }, false);
    assert_eq!(d, vec![Decision::Done { record: id(0), relocate: true }]);
}

/// A copied output (new time, same bytes) is still done, whether its record has the BLAKE3 of
/// this version or the SHA-256 of journals from before it; an edited one is not.
#[test]
fn disk_check_verifies_blake3_and_legacy_sha256_records() {
    use super::DiskCheck;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("job")).unwrap();
    std::fs::write(dir.path().join("job/t1.png"), b"abc").unwrap();
    let mut record = task_record(1, 1).outputs.remove(0);
    record.bytes = 3;
    record.mtime_ns = 1;
    let check = DiskCheck { root: dir.path() };

    record.blake3 = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85".into();
    assert_eq!(check.check(&record), FileState::Ok);
    record.blake3 = String::new();
    record.sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into();
    assert_eq!(check.check(&record), FileState::Ok);

    std::fs::write(dir.path().join("job/t1.png"), b"abd").unwrap();
    assert_eq!(check.check(&record), FileState::Modified);
    record.sha256 = String::new();
    record.blake3 = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85".into();
    assert_eq!(check.check(&record), FileState::Modified);
    std::fs::remove_file(dir.path().join("job/t1.png")).unwrap();
    assert_eq!(check.check(&record), FileState::Missing);
}

#[test]
fn an_outcome_applied_after_reading_settles_its_possibly_billed_request() {
    let sent =
        Record::Sent(SentRecord { id: id(1), fp: fp(1), n: 2, estimate_usd: Usd::from_dollars(0.04), at: "t".into() });
    let mut state = JournalState::from_records(&[sent]);
    assert_eq!((state.possibly_billed, state.possibly_billed_attempts), (Usd::from_dollars(0.04), 1));
    // An adopted output of that very request: spent at its cost, no longer possibly billed.
    state.apply(&Record::task(task_record(1, 2)));
    assert_eq!((state.possibly_billed, state.possibly_billed_attempts), (Usd::ZERO, 0));
    assert_eq!(state.spent, Usd::from_dollars(0.05));
    // A record of another attempt leaves that request counted.
    let sent =
        Record::Sent(SentRecord { id: id(2), fp: fp(2), n: 1, estimate_usd: Usd::from_dollars(0.04), at: "t".into() });
    let mut state = JournalState::from_records(&[sent]);
    state.apply(&Record::task(task_record(2, 3)));
    assert_eq!(state.possibly_billed, Usd::from_dollars(0.04));
}
