//! The plan: a validated manifest expanded into tasks (one request each) with stable ids,
//! dependency edges, output names, fingerprints and token estimates. Pure: no file or network
//! access; everything it needs was read by `manifest::load`.

pub mod estimate;
mod expand;
pub mod fingerprint;
pub mod paths;

use std::collections::HashMap;
use std::sync::Arc;

pub use expand::expand;
use fingerprint::{Fingerprint, Parts};

use crate::catalog::{ModelSpec, TokenCounts};
use crate::manifest::Manifest;
use crate::manifest::model::{Job, RefFile, RefKind};

/// Index of a task in [`Plan::tasks`].
pub type TaskIndex = u32;

#[derive(Debug)]
pub struct Plan {
    pub tasks: Vec<Task>,
}

#[derive(Debug, Clone)]
pub struct Task {
    /// Stable, readable id: `job/key/ratio@size[/model][/vN][/step]` (axes with one value are
    /// left out).
    pub id: Box<str>,
    pub job: u32,
    pub row: u32,
    pub prompt: u16,
    pub ref_set: u16,
    /// Index into the job's sizes axis (the conversation's first size).
    pub size_axis: u16,
    pub model: u16,
    /// 1-based.
    pub variant: u32,
    /// 0-based; always 0 for single-request jobs.
    pub step: u16,
    pub ratio: Arc<str>,
    /// Size name in the catalogue (`1K`, `2K`, `512`, …) for this step.
    pub size: Arc<str>,
    pub pixels: (u32, u32),
    pub prompt_text: Arc<str>,
    pub system_text: Option<Arc<str>>,
    /// Reference files sent in this task's user turn.
    pub refs: Arc<[Arc<RefFile>]>,
    /// Images taken from other jobs' tasks (`from:` edges), in reference order.
    pub from: Box<[(TaskIndex, RefKind)]>,
    /// The previous step of the conversation.
    pub history: Option<TaskIndex>,
    /// Output name without extension, relative to the output directory.
    pub output: Box<str>,
    pub fingerprint: Fingerprint,
    pub parts: Parts,
    pub estimate: TokenCounts,
}

impl Task {
    /// Every task that must succeed before this one can run.
    pub fn deps(&self) -> impl Iterator<Item = TaskIndex> + '_ {
        self.history.into_iter().chain(self.from.iter().map(|(t, _)| *t))
    }

    pub fn size_label(&self) -> String {
        format!("{}@{}", self.ratio, self.size)
    }
}

impl Plan {
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Reverse edges: for each task, the tasks that depend on it.
    pub fn dependents(&self) -> Vec<Vec<TaskIndex>> {
        let mut out = vec![Vec::new(); self.tasks.len()];
        for (i, task) in self.tasks.iter().enumerate() {
            for dep in task.deps() {
                out[dep as usize].push(i as TaskIndex);
            }
        }
        out
    }

    pub fn index_by_id(&self) -> HashMap<&str, TaskIndex> {
        self.tasks.iter().enumerate().map(|(i, t)| (&*t.id, i as TaskIndex)).collect()
    }

    /// Tasks whose outputs feed a later conversation step (their model turn must be kept).
    pub fn has_conversation_successor(&self) -> Vec<bool> {
        let mut out = vec![false; self.tasks.len()];
        for task in &self.tasks {
            if let Some(h) = task.history {
                out[h as usize] = true;
            }
        }
        out
    }
}

/// Convenience accessors that join a task with its manifest job and model.
pub struct TaskView<'a> {
    pub task: &'a Task,
    pub job: &'a Job,
    pub model: &'a ModelSpec,
}

impl<'a> TaskView<'a> {
    pub fn new(manifest: &'a Manifest, task: &'a Task) -> TaskView<'a> {
        let job = &manifest.jobs[task.job as usize];
        let model_id = &job.models[task.model as usize];
        let model = manifest.catalog.model(model_id).unwrap_or_else(|| &manifest.catalog.models[0]);
        TaskView { task, job, model }
    }

    pub fn row_key(&self) -> &str {
        &self.job.rows.rows[self.task.row as usize].key
    }

    pub fn step_name(&self) -> Option<&str> {
        match &self.job.body {
            crate::manifest::model::JobBody::Conversation { steps } => {
                steps.get(self.task.step as usize).map(|s| s.name.as_str())
            }
            crate::manifest::model::JobBody::Single { .. } => None,
        }
    }

    /// The `imageSize` wire value (`None` for models that take none).
    pub fn wire_size(&self) -> Option<&str> {
        self.model.size(&self.task.size).and_then(|s| s.wire.as_deref())
    }
}

#[cfg(test)]
mod tests;
