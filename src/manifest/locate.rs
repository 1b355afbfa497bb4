//! Where each key and value of a YAML document sits (line and column), by key path.
//!
//! Validation works on the deserialized schema, which has no positions; every diagnostic names a
//! key path (`jobs.packshot.sizes[1]`) and this index turns it into `file:line:column`. It is
//! built from the same parser serde-saphyr uses (granit-parser), in one pass over the events.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

#[derive(Debug, Default)]
pub struct LocationIndex {
    keys: HashMap<String, Position>,
    values: HashMap<String, Position>,
}

impl LocationIndex {
    /// Indexes `source`; a syntax error stops indexing (the deserializer reports it).
    pub fn build(source: &str) -> LocationIndex {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(source);
        while let Some(Ok((event, span))) = parser.next_event() {
            builder.event(&event, &span);
        }
        builder.index
    }

    /// Position of the key that introduces `path` (for unknown keys), else of its value.
    pub fn key(&self, path: &str) -> Option<Position> {
        self.keys.get(path).or_else(|| self.values.get(path)).copied()
    }

    /// Position of the value at `path`, else of its key; walks up to the nearest known parent.
    pub fn value(&self, path: &str) -> Option<Position> {
        let mut current = path;
        loop {
            if let Some(p) = self.values.get(current).or_else(|| self.keys.get(current)) {
                return Some(*p);
            }
            current = parent_path(current)?;
        }
    }
}

/// `a.b[2]` → `a.b`; `a.b` → `a`; `a` → `` (the root).
pub fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

pub fn child_key(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
}

pub fn child_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
    },
    Seq {
        path: String,
        index: usize,
    },
    /// A complex key (a mapping used as a key): nothing inside is indexed.
    Skip {
        depth: usize,
    },
}

#[derive(Default)]
struct Builder {
    index: LocationIndex,
    stack: Vec<Frame>,
}

impl Builder {
    fn event(&mut self, event: &Event<'_>, span: &Span) {
        if let Some(Frame::Skip { depth }) = self.stack.last_mut() {
            match event {
                Event::MappingStart(..) | Event::SequenceStart(..) => *depth += 1,
                Event::MappingEnd | Event::SequenceEnd if *depth > 0 => *depth -= 1,
                Event::MappingEnd | Event::SequenceEnd => {
                    self.stack.pop();
                    self.after_value();
                }
                _ => {}
            }
            return;
        }
        let pos = Position { line: span.start.line() as u32, column: span.start.col() as u32 + 1 };
        match event {
            Event::Scalar(text, ..) => {
                if self.expects_key() {
                    self.set_key(text.as_ref(), pos);
                } else {
                    self.record_value(pos);
                    self.after_value();
                }
            }
            Event::Alias(_) => {
                self.record_value(pos);
                self.after_value();
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if self.expects_key() {
                    self.stack.push(Frame::Skip { depth: 0 });
                    return;
                }
                let path = self.record_value(pos);
                let frame = if matches!(event, Event::MappingStart(..)) {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, index: 0 }
                };
                self.stack.push(frame);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.after_value();
            }
            _ => {}
        }
    }

    fn expects_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn set_key(&mut self, key: &str, pos: Position) {
        if let Some(Frame::Map { path, key: slot }) = self.stack.last_mut() {
            let full = child_key(path, key);
            self.index.keys.entry(full).or_insert(pos);
            *slot = Some(key.to_owned());
        }
    }

    /// Records the position of the value about to be read and returns its path.
    fn record_value(&mut self, pos: Position) -> String {
        let path = match self.stack.last() {
            None => String::new(),
            Some(Frame::Map { path, key }) => child_key(path, key.as_deref().unwrap_or_default()),
            Some(Frame::Seq { path, index }) => child_index(path, *index),
            Some(Frame::Skip { .. }) => return String::new(),
        };
        self.index.values.entry(path.clone()).or_insert(pos);
        path
    }

    fn after_value(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{LocationIndex, Position, parent_path};

    const DOC: &str = "version: 1\njobs:\n  packshot:\n    sizes: [\"1:1@2K\", \"4:5@1K\"]\n    refs:\n      - a.png\n      - from: other\n        size: 1K\n";

    #[test]
    fn keys_and_values_have_positions() {
        let idx = LocationIndex::build(DOC);
        assert_eq!(idx.key("version"), Some(Position { line: 1, column: 1 }));
        assert_eq!(idx.key("jobs.packshot.sizes"), Some(Position { line: 4, column: 5 }));
        assert_eq!(idx.value("jobs.packshot.sizes[1]"), Some(Position { line: 4, column: 23 }));
        assert_eq!(idx.value("jobs.packshot.refs[0]"), Some(Position { line: 6, column: 9 }));
        assert_eq!(idx.key("jobs.packshot.refs[1].size"), Some(Position { line: 8, column: 9 }));
        // Unknown paths fall back to the nearest parent.
        assert_eq!(idx.value("jobs.packshot.refs[1].nope"), Some(Position { line: 7, column: 9 }));
    }

    #[test]
    fn parents() {
        assert_eq!(parent_path("a.b[2]"), Some("a.b"));
        assert_eq!(parent_path("a.b"), Some("a"));
        assert_eq!(parent_path("a"), Some(""));
        assert_eq!(parent_path(""), None);
    }
}
