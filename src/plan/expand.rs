//! Matrix expansion: jobs × rows × prompts × reference sets × sizes × models × variants (× steps)
//! into tasks, in an order where every task comes after the tasks it depends on.

use std::borrow::Cow;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::estimate::{RequestShape, estimate, text_tokens};
use super::fingerprint::{FieldHasher, Parts, combine, short64};
use super::paths::{collision_hash, normalise_output, same_file_name};
use super::{Plan, Task, TaskIndex};
use crate::manifest::model::{Job, JobBody, RefItem, RefKind, SizeChoice};
use crate::manifest::template::{Template, Vars};
use crate::manifest::validate::{BUILTIN_VARS, MAX_REQUEST_BYTES};
use crate::manifest::vars::Row;
use crate::manifest::{Diagnostics, Manifest};

/// Variables that are the same for every task of a row: templates that use only these (and
/// columns) are rendered once per row.
const ROW_LEVEL_VARS: &[&str] = &["job", "key", "row_number"];

/// Identifies a task of a job for `from:` lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct InstanceKey {
    job: u32,
    row: u32,
    prompt: u16,
    ref_set: u16,
    size: u16,
    model: u16,
    variant: u32,
    step: u16,
}

/// Expands a validated manifest. Errors (output-name problems and collisions, edges to
/// excluded tasks) are all collected.
pub fn expand(manifest: &Manifest) -> Result<Plan, Diagnostics> {
    let mut ex = Expander {
        manifest,
        tasks: Vec::new(),
        lookup: FxHashMap::default(),
        outputs: FxHashMap::default(),
        outputs_overflow: FxHashMap::default(),
        diags: Diagnostics::default(),
        upstream_jobs: upstream_jobs(manifest),
        row_cache: FxHashMap::default(),
        row_level: FxHashMap::default(),
        strings: FxHashSet::default(),
        config_hashes: FxHashMap::default(),
        empty_refs_hash: FieldHasher::new("refs").finish(),
        no_upstream_hash: FieldHasher::new("upstream").finish(),
    };
    for job in job_order(manifest) {
        ex.job(job);
        if ex.diags.error_count() > 50 {
            break;
        }
    }
    if ex.diags.has_errors() {
        return Err(ex.diags);
    }
    Ok(Plan { tasks: ex.tasks })
}

struct Expander<'m> {
    manifest: &'m Manifest,
    tasks: Vec<Task>,
    lookup: FxHashMap<InstanceKey, TaskIndex>,
    /// Output names by case-insensitive hash (a compact index for a million names).
    outputs: FxHashMap<u64, TaskIndex>,
    /// Names whose hash an unrelated name already holds, by lower-case name.
    outputs_overflow: FxHashMap<String, TaskIndex>,
    diags: Diagnostics,
    upstream_jobs: Vec<bool>,
    /// Row-level renders of the current job: (template name, row) → text.
    row_cache: FxHashMap<(usize, u32), Arc<str>>,
    /// Whether a template (by address) reads only row-level values.
    row_level: FxHashMap<usize, bool>,
    /// Ratios and size names, shared by every task that uses them.
    strings: FxHashSet<Arc<str>>,
    /// Config hashes of the current job by (model, ratio, size, variant); ratio and size are
    /// interned, so their addresses identify them.
    config_hashes: FxHashMap<(u16, usize, usize, u32), [u8; 32]>,
    /// The hashes of the common "nothing" cases, computed once.
    empty_refs_hash: [u8; 32],
    no_upstream_hash: [u8; 32],
}

/// The built-in variables of one task, borrowed; the engine gets an owned copy only when a
/// template needs it.
struct Builtins<'a> {
    job: &'a str,
    key: &'a str,
    model: &'a str,
    ratio: &'a str,
    size: &'a str,
    variant: u32,
    step: &'a str,
    prompt_name: &'a str,
    ref_set: &'a str,
    row_number: u32,
}

impl<'a> Builtins<'a> {
    fn get(&self, name: &str) -> Option<Cow<'a, str>> {
        Some(match name {
            "job" => Cow::Borrowed(self.job),
            "key" => Cow::Borrowed(self.key),
            "model" => Cow::Borrowed(self.model),
            "ratio" => Cow::Borrowed(self.ratio),
            "size" => Cow::Borrowed(self.size),
            "variant" => Cow::Owned(self.variant.to_string()),
            "step" => Cow::Borrowed(self.step),
            "prompt_name" => Cow::Borrowed(self.prompt_name),
            "ref_set" => Cow::Borrowed(self.ref_set),
            "row_number" => Cow::Owned(self.row_number.to_string()),
            _ => return None,
        })
    }

    fn owned(&self) -> Vec<(&'static str, Arc<str>)> {
        BUILTIN_VARS.iter().filter_map(|name| Some((*name, Arc::from(&*self.get(name)?)))).collect()
    }

    /// A variable as a template sees it: a built-in, else the row's column.
    fn lookup(&self, job: &'a Job, row: &'a Row, name: &str) -> Option<Cow<'a, str>> {
        self.get(name).or_else(|| {
            let column = job.rows.column(name)?;
            Some(Cow::Borrowed(row.values.get(column)?.as_deref().unwrap_or("")))
        })
    }
}

/// The size of a task's request body as sent, without its JSON framing: the texts and the
/// reference images as base64 (upstream images are not known before they exist).
fn request_bytes(prompt: &str, system: Option<&str>, refs: &[Arc<crate::manifest::model::RefFile>]) -> u64 {
    let images: u64 = refs.iter().map(|r| r.bytes.div_ceil(3) * 4).sum();
    prompt.len() as u64 + system.map_or(0, |s| s.len() as u64) + images
}

/// Which template is rendered, for error messages (formatted only on error).
#[derive(Clone, Copy)]
enum TemplateOf<'a> {
    Prompt(&'a str),
    Step(u16),
    System,
}

impl TemplateOf<'_> {
    fn path(self, job: &Job) -> String {
        match self {
            TemplateOf::Prompt(name) => format!("jobs.{}.prompts.{name}", job.name),
            TemplateOf::Step(step) => format!("jobs.{}.steps[{step}].prompt", job.name),
            TemplateOf::System => format!("jobs.{}.system", job.name),
        }
    }
}

/// The values of one combination, before steps.
#[derive(Clone, Copy)]
struct Combo {
    row: u32,
    prompt: u16,
    ref_set: u16,
    size: u16,
    model: u16,
    variant: u32,
}

/// What a conversation has accumulated before the current step.
#[derive(Default, Clone, Copy)]
struct History {
    task: Option<TaskIndex>,
    text_tokens: u64,
    images: u64,
}

impl Expander<'_> {
    fn job(&mut self, j: usize) {
        let job = &self.manifest.jobs[j];
        self.row_cache.clear();
        self.config_hashes.clear();
        self.tasks.reserve(planned_upper_bound(job));
        let prompt_count = match &job.body {
            JobBody::Single { prompts } => prompts.len(),
            JobBody::Conversation { .. } => 1,
        };
        for row in 0..job.rows.rows.len() as u32 {
            for prompt in 0..prompt_count as u16 {
                for ref_set in 0..job.ref_sets.len() as u16 {
                    for size in 0..job.sizes.len() as u16 {
                        for model in 0..job.models.len() as u16 {
                            for variant in 1..=job.repeat {
                                let combo = Combo { row, prompt, ref_set, size, model, variant };
                                if !self.excluded(job, combo) {
                                    self.combination(j, combo);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn excluded(&self, job: &Job, c: Combo) -> bool {
        if job.excludes.is_empty() {
            return false;
        }
        let row = &job.rows.rows[c.row as usize];
        let model = &job.models[c.model as usize];
        let size = &job.sizes[c.size as usize];
        let spec = self.manifest.catalog.model(model);
        let size_name = spec.map_or("", |s| size.size_for(&s.default_size));
        job.excludes.iter().any(|ex| {
            ex.conditions.iter().all(|(k, v)| match k.as_str() {
                "model" => model == v,
                "ratio" => size.ratio == *v,
                "size" => size_name == v || size.label() == *v || format!("{}@{size_name}", size.ratio) == *v,
                "variant" => c.variant.to_string() == *v,
                "key" => *row.key == **v,
                "prompt" => match &job.body {
                    JobBody::Single { prompts } => prompts[c.prompt as usize].name == *v,
                    JobBody::Conversation { .. } => false,
                },
                "ref_set" => job.ref_sets[c.ref_set as usize].name == *v,
                column => job.rows.column(column).and_then(|i| row.values[i].as_deref()) == Some(v.as_str()),
            })
        })
    }

    fn combination(&mut self, j: usize, c: Combo) {
        let job = &self.manifest.jobs[j];
        let mut history = History::default();
        let mut size_choice = job.sizes[c.size as usize].clone();
        for step in 0..job.body.step_count() as u16 {
            if let JobBody::Conversation { steps } = &job.body
                && let Some(changed) = &steps[step as usize].size
            {
                size_choice = changed.clone();
            }
            match self.task(j, c, step, &size_choice, history) {
                Some(next) => history = next,
                None => return,
            }
        }
    }

    /// Builds one task; returns the history for the next step.
    fn task(&mut self, j: usize, c: Combo, step: u16, choice: &SizeChoice, history: History) -> Option<History> {
        let manifest = self.manifest;
        let job = &manifest.jobs[j];
        let row = &job.rows.rows[c.row as usize];
        let model_id = &job.models[c.model as usize];
        let spec = manifest.catalog.model(model_id)?;
        let size_name = self.intern(choice.size_for(&spec.default_size));
        let size_spec = spec.size(&size_name)?;
        let ratio = self.intern(&choice.ratio);
        let pixels = spec.pixels(&ratio, &size_name).unwrap_or((0, 0));
        let (prompt_name, step_name) = names(job, c, step);
        let set = &job.ref_sets[c.ref_set as usize];
        let builtins = Builtins {
            job: &job.name,
            key: &row.key,
            model: model_id,
            ratio: &ratio,
            size: &size_name,
            variant: c.variant,
            step: step_name.unwrap_or(""),
            prompt_name,
            ref_set: &set.name,
            row_number: row.line,
        };

        let (prompt_template, prompt_of) = prompt_template(job, c, step);
        let prompt_text = self.render_cached(j, prompt_template, prompt_of, c.row, &builtins, 0)?;
        let system_text = match &job.generation.system {
            Some(t) => Some(self.render_cached(j, t, TemplateOf::System, c.row, &builtins, 1)?),
            None => None,
        };

        // References of this turn: the set's files and edges on the first step, the step's own
        // references on every step of a conversation.
        let mut refs: Vec<_> = Vec::new();
        let mut items: Vec<&RefItem> = Vec::new();
        if step == 0 {
            refs.extend(set.files.get(c.row as usize).into_iter().flat_map(|f| f.iter().cloned()));
            items.extend(set.items.iter());
        }
        if let JobBody::Conversation { steps } = &job.body {
            let step_refs = &steps[step as usize].refs;
            refs.extend(step_refs.files.get(c.row as usize).into_iter().flat_map(|f| f.iter().cloned()));
            items.extend(step_refs.items.iter());
        }
        let mut from: Vec<(TaskIndex, RefKind)> = Vec::new();
        for item in items {
            if let RefItem::From(f) = item {
                let upstream = self.upstream_task(job, &row.key, f)?;
                from.push((upstream, f.kind));
            }
        }

        let request_bytes = request_bytes(&prompt_text, system_text.as_deref(), &refs);
        if request_bytes > MAX_REQUEST_BYTES {
            let where_ = job.rows.describe_row(row);
            self.diags.push(
                manifest
                    .diagnostic(
                        &prompt_of.path(job),
                        format!(
                            "the request for {where_} would be {} MB (prompt and system text, and the reference images as base64); the API accepts at most {} MB",
                            request_bytes >> 20,
                            MAX_REQUEST_BYTES >> 20
                        ),
                    )
                    .with_help("shorten the prompt or use fewer or smaller reference images"),
            );
            return None;
        }
        let output = self.output_name(job, &builtins, c.row)?;
        // Ids name the conversation by its first size, so that every step of one conversation
        // shares it even when a later step changes the size.
        let axis = &job.sizes[c.size as usize];
        let id = task_id(
            job,
            &row.key,
            prompt_name,
            &set.name,
            &axis.ratio,
            axis.size_for(&spec.default_size),
            model_id,
            c.variant,
            step_name,
        );

        // Estimate.
        let input_text =
            history.text_tokens + text_tokens(&prompt_text) + system_text.as_deref().map_or(0, text_tokens);
        let input_images = history.images + refs.len() as u64 + from.len() as u64;
        let shape = RequestShape {
            input_text,
            input_images,
            output_image: u64::from(size_spec.output_tokens),
            wants_text: job.generation.wants_text(),
        };
        let tokens = estimate(spec, shape, job.generation.thinking_level.as_deref());

        // Fingerprint.
        let prompt_hash = {
            let mut h = FieldHasher::new("prompt");
            h.str(&prompt_text).opt_str(system_text.as_deref());
            h.finish()
        };
        let refs_hash = if refs.is_empty() {
            self.empty_refs_hash
        } else {
            let mut h = FieldHasher::new("refs");
            for r in &refs {
                h.str(kind_tag(r.kind)).str(r.image.mime()).bytes(&r.sha256);
            }
            h.finish()
        };
        let config_key = (
            c.model,
            Arc::as_ptr(&ratio) as *const u8 as usize,
            Arc::as_ptr(&size_name) as *const u8 as usize,
            c.variant,
        );
        let config_hash = *self.config_hashes.entry(config_key).or_insert_with(|| {
            let g = &job.generation;
            let mut h = FieldHasher::new("config");
            h.str(model_id)
                .str(&ratio)
                .opt_str(size_spec.wire.as_deref())
                .str(&g.modalities.join(","))
                .opt_str(g.thinking_level.as_deref())
                .opt_str(g.include_thoughts.map(|b| if b { "thoughts" } else { "no-thoughts" }))
                .u64(u64::from(g.grounding_web))
                .u64(u64::from(g.grounding_image))
                .opt_str(g.temperature.map(|t| t.to_string()).as_deref())
                .opt_str(g.seed.map(|s| s.to_string()).as_deref())
                .u64(u64::from(c.variant));
            // Only when set: fingerprints of manifests without it stay as they were.
            if let Some(n) = g.max_output_tokens {
                h.str("max_output_tokens").u64(u64::from(n));
            }
            h.finish()
        });
        let upstream_hash = if history.task.is_none() && from.is_empty() {
            self.no_upstream_hash
        } else {
            let mut h = FieldHasher::new("upstream");
            if let Some(prev) = history.task {
                h.str("history").bytes(&self.tasks[prev as usize].fingerprint.0);
            }
            for (t, kind) in &from {
                h.str(kind_tag(*kind)).bytes(&self.tasks[*t as usize].fingerprint.0);
            }
            h.finish()
        };
        let fingerprint = combine(&prompt_hash, &refs_hash, &config_hash, &upstream_hash);
        let parts = Parts {
            prompt: short64(&prompt_hash),
            refs: short64(&refs_hash),
            config: short64(&config_hash),
            upstream: short64(&upstream_hash),
        };

        let index = self.tasks.len() as TaskIndex;
        if self.upstream_jobs[j] {
            let key = InstanceKey {
                job: j as u32,
                row: c.row,
                prompt: c.prompt,
                ref_set: c.ref_set,
                size: c.size,
                model: c.model,
                variant: c.variant,
                step,
            };
            self.lookup.insert(key, index);
        }
        if let Some(other) = self.claim_output(&output, index) {
            let other_task = &self.tasks[other as usize];
            let help = if *other_task.output != *output {
                format!(
                    "`{}` and `{output}` differ only in letter case, which macOS and Windows file systems do not tell apart; make the names differ",
                    other_task.output
                )
            } else {
                "put every axis with several values in the output name (e.g. {{ ratio }}, {{ size }}, {{ model }}, v{{ variant }})".to_owned()
            };
            let other_id = other_task.id.clone();
            self.diags.push(
                manifest
                    .diagnostic(&job.output_path, format!("tasks `{other_id}` and `{id}` would both write `{output}`"))
                    .with_help(help),
            );
            return None;
        }

        // The next turn replays this one: its prompt, the model's caption and, when thoughts
        // are returned, their summary.
        let thought_summary = if job.generation.include_thoughts == Some(true) {
            u64::from(spec.estimates.thought_summary_tokens)
        } else {
            0
        };
        let next = History {
            task: Some(index),
            text_tokens: input_text + tokens.output_text + thought_summary,
            images: input_images + 1,
        };

        self.tasks.push(Task {
            id: id.into_boxed_str(),
            job: j as u32,
            row: c.row,
            prompt: c.prompt,
            ref_set: c.ref_set,
            size_axis: c.size,
            model: c.model,
            variant: c.variant,
            step,
            ratio,
            size: size_name,
            pixels,
            prompt_text,
            system_text,
            refs: Arc::from(refs),
            from: from.into_boxed_slice(),
            history: history.task,
            output: output.into_boxed_str(),
            fingerprint,
            parts,
            estimate: tokens,
        });
        Some(next)
    }

    /// One shared copy of a short, much repeated string.
    fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.strings.insert(shared.clone());
        shared
    }

    /// Records that task `index` writes `output`; returns the task that already does.
    fn claim_output(&mut self, output: &str, index: TaskIndex) -> Option<TaskIndex> {
        let hash = collision_hash(output);
        let Some(&holder) = self.outputs.get(&hash) else {
            self.outputs.insert(hash, index);
            return None;
        };
        if same_file_name(&self.tasks[holder as usize].output, output) {
            return Some(holder);
        }
        // Two different names with one hash: exact, slower bookkeeping for these few.
        let lower = output.to_lowercase();
        if let Some(&other) = self.outputs_overflow.get(&lower) {
            return Some(other);
        }
        self.outputs_overflow.insert(lower, index);
        None
    }

    /// Whether `template` reads only values that are the same for every task of a row.
    fn is_row_level(&mut self, template: &Template, slot: usize) -> bool {
        let templates = &self.manifest.templates;
        *self.row_level.entry(template_slot(template, slot)).or_insert_with(|| {
            templates
                .variables(template)
                .iter()
                .all(|v| !BUILTIN_VARS.contains(&v.as_str()) || ROW_LEVEL_VARS.contains(&v.as_str()))
        })
    }

    /// Renders a prompt or system template, once per row when it only reads row-level values.
    fn render_cached(
        &mut self,
        j: usize,
        template: &Template,
        of: TemplateOf<'_>,
        row: u32,
        builtins: &Builtins<'_>,
        slot: usize,
    ) -> Option<Arc<str>> {
        if let Template::Literal(text) = template {
            return Some(text.clone());
        }
        let job = &self.manifest.jobs[j];
        let row_level = self.is_row_level(template, slot);
        let cache_key = (template_slot(template, slot), row);
        if row_level && let Some(hit) = self.row_cache.get(&cache_key) {
            return Some(hit.clone());
        }
        match self.render(job, template, builtins, row, false) {
            Ok(text) => {
                let text: Arc<str> = Arc::from(text);
                if row_level {
                    self.row_cache.insert(cache_key, text.clone());
                }
                Some(text)
            }
            Err(e) => {
                let where_ = job.rows.describe_row(&job.rows.rows[row as usize]);
                let path = of.path(job);
                self.diags.push(self.manifest.diagnostic(&path, format!("template failed for {where_}: {e}")));
                None
            }
        }
    }

    /// Renders without the engine when the template allows, else through it.
    fn render(
        &self,
        job: &Job,
        template: &Template,
        builtins: &Builtins<'_>,
        row: u32,
        slugged: bool,
    ) -> Result<String, minijinja::Error> {
        let r = &job.rows.rows[row as usize];
        let templates = &self.manifest.templates;
        if let Some(text) = templates.render_fast(template, |name| builtins.lookup(job, r, name), slugged) {
            return Ok(text);
        }
        templates.render(template, vars_for(job, row, builtins, slugged).into_value())
    }

    fn output_name(&mut self, job: &Job, builtins: &Builtins<'_>, row_index: u32) -> Option<String> {
        let row = &job.rows.rows[row_index as usize];
        let rendered = match self.render(job, &job.output, builtins, row_index, true) {
            Ok(r) => r,
            Err(e) => {
                let where_ = job.rows.describe_row(row);
                self.diags.push(
                    self.manifest.diagnostic(&job.output_path, format!("output template failed for {where_}: {e}")),
                );
                return None;
            }
        };
        match normalise_output(&rendered) {
            Ok(name) => Some(name),
            Err(message) => {
                let where_ = job.rows.describe_row(row);
                self.diags.push(self.manifest.diagnostic(&job.output_path, format!("{message} (for {where_})")));
                None
            }
        }
    }

    fn upstream_task(&mut self, job: &Job, key: &str, f: &crate::manifest::model::FromRef) -> Option<TaskIndex> {
        let upstream = &self.manifest.jobs[f.job];
        let row = upstream.rows.rows.iter().position(|r| &*r.key == key).or(if upstream.rows.has_vars() {
            None
        } else {
            Some(0)
        });
        let size = match &f.size {
            Some(s) => upstream.sizes.iter().position(|u| u == s),
            None => Some(0),
        };
        let model = match &f.model {
            Some(m) => upstream.models.iter().position(|u| u == m),
            None => Some(0),
        };
        let found = match (row, size, model) {
            (Some(row), Some(size), Some(model)) => self
                .lookup
                .get(&InstanceKey {
                    job: f.job as u32,
                    row: row as u32,
                    prompt: f.prompt.unwrap_or(0) as u16,
                    ref_set: f.ref_set.unwrap_or(0) as u16,
                    size: size as u16,
                    model: model as u16,
                    variant: f.variant.unwrap_or(1),
                    step: f.step.unwrap_or(0) as u16,
                })
                .copied(),
            _ => None,
        };
        if found.is_none() {
            self.diags.push(self.manifest.diagnostic(
                &format!("jobs.{}", job.name),
                format!(
                    "job `{}` needs the image of row `{key}` from job `{}`, but that task is excluded or missing",
                    job.name, upstream.name
                ),
            ));
        }
        found
    }
}

fn template_slot(template: &Template, slot: usize) -> usize {
    match template {
        Template::Engine { name, .. } => (Arc::as_ptr(name) as *const u8 as usize) ^ slot,
        Template::Literal(text) => (Arc::as_ptr(text) as *const u8 as usize) ^ slot,
    }
}

/// The number of tasks a job expands to before exclusions (to size the task list once).
fn planned_upper_bound(job: &Job) -> usize {
    let prompts = match &job.body {
        JobBody::Single { prompts } => prompts.len(),
        JobBody::Conversation { .. } => 1,
    };
    [job.rows.rows.len(), prompts, job.ref_sets.len(), job.sizes.len(), job.models.len(), job.repeat as usize]
        .into_iter()
        .fold(job.body.step_count(), usize::saturating_mul)
        .min(1 << 24)
}

fn names(job: &Job, c: Combo, step: u16) -> (&str, Option<&str>) {
    match &job.body {
        JobBody::Single { prompts } => (&prompts[c.prompt as usize].name, None),
        JobBody::Conversation { steps } => ("", Some(&steps[step as usize].name)),
    }
}

fn prompt_template(job: &Job, c: Combo, step: u16) -> (&Template, TemplateOf<'_>) {
    match &job.body {
        JobBody::Single { prompts } => {
            let p = &prompts[c.prompt as usize];
            (&p.template, TemplateOf::Prompt(&p.name))
        }
        JobBody::Conversation { steps } => (&steps[step as usize].prompt, TemplateOf::Step(step)),
    }
}

fn vars_for(job: &Job, row: u32, builtins: &Builtins<'_>, slugged: bool) -> Vars {
    let r = &job.rows.rows[row as usize];
    let values: Vec<Arc<str>> = r.values.iter().map(|v| v.clone().unwrap_or_else(|| Arc::from(""))).collect();
    Vars { columns: job.rows.columns.clone(), values: Arc::from(values), builtins: builtins.owned(), slugged }
}

fn kind_tag(kind: RefKind) -> &'static str {
    match kind {
        RefKind::Object => "object",
        RefKind::Person => "person",
    }
}

#[allow(clippy::too_many_arguments)]
fn task_id(
    job: &Job,
    key: &str,
    prompt: &str,
    set: &str,
    ratio: &str,
    size: &str,
    model: &str,
    variant: u32,
    step: Option<&str>,
) -> String {
    let mut id = String::with_capacity(64);
    id.push_str(&job.name);
    if job.rows.has_vars() {
        id.push('/');
        id.push_str(key);
    }
    if matches!(&job.body, JobBody::Single { prompts } if prompts.len() > 1) {
        id.push('/');
        id.push_str(prompt);
    }
    if job.ref_sets.len() > 1 {
        id.push('/');
        id.push_str(set);
    }
    id.push('/');
    id.push_str(ratio);
    id.push('@');
    id.push_str(size);
    if job.models.len() > 1 {
        id.push('/');
        id.push_str(model);
    }
    if job.repeat > 1 {
        id.push_str("/v");
        id.push_str(&variant.to_string());
    }
    if let Some(step) = step {
        id.push('/');
        id.push_str(step);
    }
    id
}

/// Jobs that some `from:` edge points at (their tasks are indexed for lookups).
fn upstream_jobs(manifest: &Manifest) -> Vec<bool> {
    let mut out = vec![false; manifest.jobs.len()];
    for job in &manifest.jobs {
        for item in all_items(job) {
            if let RefItem::From(f) = item
                && f.job < out.len()
            {
                out[f.job] = true;
            }
        }
    }
    out
}

fn all_items(job: &Job) -> impl Iterator<Item = &RefItem> {
    let steps: Box<dyn Iterator<Item = &RefItem>> = match &job.body {
        JobBody::Conversation { steps } => Box::new(steps.iter().flat_map(|s| s.refs.items.iter())),
        JobBody::Single { .. } => Box::new(std::iter::empty()),
    };
    job.ref_sets.iter().flat_map(|s| s.items.iter()).chain(steps)
}

/// Declaration order, except that a job comes after the jobs it takes images from.
fn job_order(manifest: &Manifest) -> Vec<usize> {
    let n = manifest.jobs.len();
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    fn visit(j: usize, manifest: &Manifest, done: &mut [bool], order: &mut Vec<usize>, depth: usize) {
        if done[j] || depth > manifest.jobs.len() {
            return;
        }
        done[j] = true;
        for item in all_items(&manifest.jobs[j]) {
            if let RefItem::From(f) = item
                && f.job < manifest.jobs.len()
            {
                visit(f.job, manifest, done, order, depth + 1);
            }
        }
        order.push(j);
    }
    for j in 0..n {
        visit(j, manifest, &mut done, &mut order, 0);
    }
    order
}
