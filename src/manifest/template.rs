//! Prompt, reference-path and output-name templates (minijinja, strict undefined).
//!
//! Templates are compiled once at load time. A template without any `{{`/`{%`/`{#` markup is
//! kept as a literal and never goes through the engine (most reference paths and many prompts),
//! which keeps planning a million tasks fast. Variables come from a [`Vars`] object built over a
//! row without copying it into a map per render.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, Value};
use minijinja::{Environment, UndefinedBehavior};

/// Longest text a template may render. No model reads more than
/// [`MAX_PLAUSIBLE_TOKENS`](crate::catalog::MAX_PLAUSIBLE_TOKENS) tokens, 8 MiB of text at the
/// catalogue's four bytes a token; rendering stops there, so a runaway template is an error at
/// validation instead of gigabytes held in memory for every task.
pub const MAX_RENDERED_BYTES: usize = (crate::catalog::MAX_PLAUSIBLE_TOKENS * 4) as usize;

/// A compiled template: a literal or a name in the environment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Template {
    Literal(Arc<str>),
    Engine {
        name: Arc<str>,
        source: Arc<str>,
        /// Text and bare `{{ variable }}` substitutions only: rendered without the engine, which
        /// is most of the cost of planning a million tasks. `None` for anything richer.
        pieces: Option<Arc<[Piece]>>,
    },
}

/// A piece of a template that only substitutes variables.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Piece {
    Text(Box<str>),
    Var(Box<str>),
}

impl Template {
    pub fn source(&self) -> &str {
        match self {
            Template::Literal(s) => s,
            Template::Engine { source, .. } => source,
        }
    }

    pub fn is_literal(&self) -> bool {
        matches!(self, Template::Literal(_))
    }
}

#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

impl Templates {
    pub fn new() -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Prompts are not HTML: never escape.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.add_filter("slug", |s: String| slug(&s));
        Templates { env }
    }

    /// Compiles `source` under `name` (the key path it came from, for error messages).
    pub fn add(&mut self, name: &str, source: &str) -> Result<Template, minijinja::Error> {
        if !has_markup(source) {
            return Ok(Template::Literal(Arc::from(source)));
        }
        self.env.add_template_owned(name.to_owned(), source.to_owned())?;
        let pieces = substitution_pieces(source).map(Arc::from);
        Ok(Template::Engine { name: Arc::from(name), source: Arc::from(source), pieces })
    }

    /// Top-level variable names the template reads.
    pub fn variables(&self, template: &Template) -> BTreeSet<String> {
        match template {
            Template::Literal(_) => BTreeSet::new(),
            Template::Engine { pieces: Some(pieces), .. } => pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::Var(v) => Some(v.to_string()),
                    Piece::Text(_) => None,
                })
                .collect(),
            Template::Engine { name, .. } => match self.env.get_template(name) {
                Ok(t) => t.undeclared_variables(false).into_iter().collect(),
                Err(_) => BTreeSet::new(),
            },
        }
    }

    /// Renders through the engine, stopping at [`MAX_RENDERED_BYTES`].
    pub fn render(&self, template: &Template, vars: Value) -> Result<String, minijinja::Error> {
        match template {
            Template::Literal(s) => Ok(s.to_string()),
            Template::Engine { name, .. } => {
                let mut out = Bounded(Vec::new());
                match self.env.get_template(name)?.render_captured_to(vars, &mut out) {
                    Ok(_) => {
                        Ok(String::from_utf8(out.0).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into()))
                    }
                    Err(_) if out.0.len() >= MAX_RENDERED_BYTES => Err(too_long()),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Renders a literal or a substitution-only template without the engine, taking values from
    /// `get` (through [`slug`] when `slugged`). `None` when the engine is needed: richer syntax,
    /// or a variable `get` does not know (the engine then reports it).
    pub fn render_fast<'v>(
        &self,
        template: &Template,
        get: impl Fn(&str) -> Option<Cow<'v, str>>,
        slugged: bool,
    ) -> Option<String> {
        let pieces = match template {
            Template::Literal(s) => return Some(s.to_string()),
            Template::Engine { pieces: Some(pieces), .. } => pieces,
            Template::Engine { pieces: None, .. } => return None,
        };
        let mut out = String::with_capacity(64);
        for piece in pieces.iter() {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Var(name) => {
                    let value = get(name)?;
                    if slugged { out.push_str(&slug(&value)) } else { out.push_str(&value) }
                }
            }
            if out.len() > MAX_RENDERED_BYTES {
                // The engine says why, with the same message as for any other template.
                return None;
            }
        }
        Some(out)
    }
}

/// A writer that refuses to grow past [`MAX_RENDERED_BYTES`].
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_RENDERED_BYTES {
            self.0.extend_from_slice(&buf[..MAX_RENDERED_BYTES - self.0.len()]);
            return Err(std::io::Error::other("too long"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn too_long() -> minijinja::Error {
    minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        format!(
            "it renders more than {} MiB of text; no model reads a prompt that long ({} tokens at most)",
            MAX_RENDERED_BYTES >> 20,
            crate::catalog::MAX_PLAUSIBLE_TOKENS
        ),
    )
}

fn has_markup(source: &str) -> bool {
    source.contains("{{") || source.contains("{%") || source.contains("{#")
}

/// Splits a template made only of text and `{{ name }}` into pieces, rendering exactly as the
/// engine would (which drops one trailing newline); `None` for any other syntax.
fn substitution_pieces(source: &str) -> Option<Vec<Piece>> {
    if source.contains("{%") || source.contains("{#") {
        return None;
    }
    let source = source.strip_suffix('\n').map_or(source, |s| s.strip_suffix('\r').unwrap_or(s));
    let mut pieces = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].into()));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        let name = after[..end].trim_matches([' ', '\t']);
        if !is_plain_variable(name) {
            return None;
        }
        pieces.push(Piece::Var(name.into()));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.into()));
    }
    Some(pieces)
}

/// An identifier the engine would look up (not a constant like `true` or `none`).
fn is_plain_variable(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(name, "true" | "false" | "none" | "True" | "False" | "None")
}

/// Makes a value safe for a file name: letters, digits, `-`, `_` and `.` are kept; `:` between
/// digits becomes `x` (`16:9` → `16x9`); anything else becomes `-`; runs of `-` collapse; leading
/// and trailing `-`/`.` go; at most 80 characters; an empty result is `_`.
pub fn slug(value: &str) -> String {
    if is_already_slug(value) {
        return value.to_owned();
    }
    slug_slow(value)
}

fn slug_slow(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut prev: Option<char> = None;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        let mapped = if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' {
            c
        } else if c == ':' && prev.is_some_and(|p| p.is_ascii_digit()) && chars.peek().is_some_and(char::is_ascii_digit)
        {
            'x'
        } else {
            '-'
        };
        prev = Some(c);
        // No `..` can survive into a name, whatever the row says.
        let mapped = if mapped == '.' && (out.ends_with('.') || out.ends_with('-')) { '-' } else { mapped };
        if mapped == '-' && out.ends_with('-') {
            continue;
        }
        out.push(mapped);
    }
    let trimmed: String = out.trim_matches(|c| c == '-' || c == '.').chars().take(80).collect();
    let mut trimmed = trimmed.trim_end_matches(['-', '.']).to_owned();
    if trimmed.is_empty() {
        return "_".to_owned();
    }
    // Windows reserves these names whatever the extension: `CON` becomes `CON_`.
    let stem = trimmed.split('.').next().unwrap_or("").to_ascii_uppercase();
    if crate::plan::paths::is_windows_reserved(&stem) {
        trimmed.insert(stem.len(), '_');
    }
    trimmed
}

/// The common case, checked without allocating: a short ASCII word that `slug` keeps as it is.
fn is_already_slug(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 80
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-')
        && !value.contains("--")
        && !(bytes.len() <= 4 && crate::plan::paths::is_windows_reserved(&value.to_ascii_uppercase()))
}

/// The variables of one render: a row's columns plus built-ins (`job`, `key`, `ratio`, `size`,
/// `model`, …). With `slugged`, every value is passed through [`slug`] (output names).
#[derive(Debug)]
pub struct Vars {
    pub columns: Arc<[Arc<str>]>,
    pub values: Arc<[Arc<str>]>,
    pub builtins: Vec<(&'static str, Arc<str>)>,
    pub slugged: bool,
}

impl Vars {
    pub fn into_value(self) -> Value {
        Value::from_object(self)
    }

    fn lookup(&self, key: &str) -> Option<&Arc<str>> {
        if let Some((_, v)) = self.builtins.iter().find(|(k, _)| *k == key) {
            return Some(v);
        }
        let index = self.columns.iter().position(|c| &**c == key)?;
        self.values.get(index)
    }
}

impl Object for Vars {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        self.get_value_by_str(key)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        let value = self.lookup(key)?;
        Some(if self.slugged { Value::from(slug(value)) } else { Value::from(value.clone()) })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut keys: Vec<Value> = self.builtins.iter().map(|(k, _)| Value::from(*k)).collect();
        keys.extend(self.columns.iter().map(|c| Value::from(c.clone())));
        Enumerator::Values(keys)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use super::{Template, Templates, Vars, slug};

    fn vars(slugged: bool) -> Vars {
        Vars {
            columns: Arc::from(vec![Arc::from("sku"), Arc::from("name")]),
            values: Arc::from(vec![Arc::from("SKU/001"), Arc::from("Red Mug <b>")]),
            builtins: vec![("ratio", Arc::from("16:9"))],
            slugged,
        }
    }

    #[test]
    fn slugs_are_file_safe() {
        assert_eq!(slug("16:9"), "16x9");
        assert_eq!(slug("SKU-001"), "SKU-001");
        assert_eq!(slug("../../etc/passwd"), "etc-passwd");
        assert_eq!(slug("a b\\c:d"), "a-b-c-d");
        assert_eq!(slug("..."), "_");
        assert_eq!(slug("a/../../b"), "a-b");
        assert_eq!(slug("a..b"), "a.-b");
        assert_eq!(slug("v1.2"), "v1.2");

        assert_eq!(slug("Café au lait"), "Café-au-lait");
        assert_eq!(slug(&"x".repeat(200)).len(), 80);
        assert_eq!(slug("CON"), "CON_");
        assert_eq!(slug("nul.txt"), "nul_.txt");
        assert_eq!(slug("console"), "console");
    }

    proptest::proptest! {
        #[test]
        fn the_shortcut_agrees_with_the_full_slug(value in "[A-Za-z0-9_.:-]{0,90}") {
            proptest::prop_assert_eq!(slug(&value), super::slug_slow(&value));
        }
    }

    #[test]
    fn literals_skip_the_engine() {
        let mut t = Templates::new();
        assert!(t.add("a", "plain text").unwrap().is_literal());
        assert!(matches!(t.add("b", "{{ sku }}").unwrap(), Template::Engine { .. }));
    }

    #[test]
    fn renders_rows_and_slugs_for_output() {
        let mut t = Templates::new();
        let tpl = t.add("out", "{{ sku }}-{{ ratio }}").unwrap();
        assert_eq!(t.render(&tpl, vars(false).into_value()).unwrap(), "SKU/001-16:9");
        assert_eq!(t.render(&tpl, vars(true).into_value()).unwrap(), "SKU-001-16x9");
        let prompt = t.add("p", "A {{ name | upper }}").unwrap();
        assert_eq!(t.render(&prompt, vars(false).into_value()).unwrap(), "A RED MUG <B>");
    }

    #[test]
    fn a_runaway_template_stops_at_the_limit_with_a_clear_error() {
        let mut t = Templates::new();
        let loop_ = t.add("p", "{% for i in range(200) %}{{ 'x' * 100000 }}{% endfor %}").unwrap();
        let e = t.render(&loop_, vars(false).into_value()).unwrap_err();
        assert!(e.to_string().contains("renders more than 8 MiB"), "{e}");
        let fits = t.add("q", "{% for i in range(20) %}{{ 'x' * 100000 }}{% endfor %}").unwrap();
        assert_eq!(t.render(&fits, vars(false).into_value()).unwrap().len(), 2_000_000);
    }

    #[test]
    fn the_fast_path_renders_exactly_as_the_engine() {
        let mut t = Templates::new();
        let sources = [
            "{{ sku }}",
            "{{sku}}-{{ ratio }}",
            "a {{ name }} b\n",
            "a {{ name }}\r\n",
            "x\n\n",
            "{{ name }}}}{ {{ sku }}",
            "  lead {{\tsku\t}} trail  ",
            "{{ sku }}{{ sku }}",
        ];
        for (i, source) in sources.iter().enumerate() {
            let tpl = t.add(&format!("t{i}"), source).unwrap();
            for slugged in [false, true] {
                let engine = t.render(&tpl, vars(slugged).into_value()).unwrap();
                let v = vars(false);
                let fast = t.render_fast(&tpl, |k| v.lookup(k).map(|s| Cow::Borrowed(&**s)), slugged);
                assert_eq!(fast.as_deref(), Some(engine.as_str()), "{source:?} slugged={slugged}");
            }
        }
        for rich in ["{{ name | upper }}", "{{ a.b }}", "{% if x %}y{% endif %}", "{{ true }}", "{{- sku }}"] {
            let tpl = t.add(rich, rich).unwrap();
            assert!(t.render_fast(&tpl, |_| Some(Cow::Borrowed("v")), false).is_none(), "{rich}");
        }
        let tpl = t.add("missing", "{{ colour }}").unwrap();
        let v = vars(false);
        assert!(t.render_fast(&tpl, |k| v.lookup(k).map(|s| Cow::Borrowed(&**s)), false).is_none());
    }

    #[test]
    fn undefined_is_an_error_and_variables_are_listed() {
        let mut t = Templates::new();
        let tpl = t.add("p", "{{ sku }} {{ colour }}").unwrap();
        assert!(t.render(&tpl, vars(false).into_value()).is_err());
        assert_eq!(t.variables(&tpl).into_iter().collect::<Vec<_>>(), ["colour", "sku"]);
    }
}
