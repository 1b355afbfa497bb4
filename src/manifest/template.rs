//! Prompt, reference-path and output-name templates (minijinja, strict undefined).
//!
//! Templates are compiled once at load time. A template without any `{{`/`{%`/`{#` markup is
//! kept as a literal and never goes through the engine (most reference paths and many prompts),
//! which keeps planning a million tasks fast. Variables come from a [`Vars`] object built over a
//! row without copying it into a map per render.

use std::collections::BTreeSet;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, Value};
use minijinja::{Environment, UndefinedBehavior};

/// A compiled template: a literal or a name in the environment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Template {
    Literal(Arc<str>),
    Engine { name: Arc<str>, source: Arc<str> },
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
        Ok(Template::Engine { name: Arc::from(name), source: Arc::from(source) })
    }

    /// Top-level variable names the template reads.
    pub fn variables(&self, template: &Template) -> BTreeSet<String> {
        match template {
            Template::Literal(_) => BTreeSet::new(),
            Template::Engine { name, .. } => match self.env.get_template(name) {
                Ok(t) => t.undeclared_variables(false).into_iter().collect(),
                Err(_) => BTreeSet::new(),
            },
        }
    }

    pub fn render(&self, template: &Template, vars: Value) -> Result<String, minijinja::Error> {
        match template {
            Template::Literal(s) => Ok(s.to_string()),
            Template::Engine { name, .. } => self.env.get_template(name)?.render(vars),
        }
    }
}

fn has_markup(source: &str) -> bool {
    source.contains("{{") || source.contains("{%") || source.contains("{#")
}

/// Makes a value safe for a file name: letters, digits, `-`, `_` and `.` are kept; `:` between
/// digits becomes `x` (`16:9` → `16x9`); anything else becomes `-`; runs of `-` collapse; leading
/// and trailing `-`/`.` go; at most 80 characters; an empty result is `_`.
pub fn slug(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len());
    for (i, &c) in chars.iter().enumerate() {
        let mapped = if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' {
            c
        } else if c == ':'
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(char::is_ascii_digit)
        {
            'x'
        } else {
            '-'
        };
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
    fn undefined_is_an_error_and_variables_are_listed() {
        let mut t = Templates::new();
        let tpl = t.add("p", "{{ sku }} {{ colour }}").unwrap();
        assert!(t.render(&tpl, vars(false).into_value()).is_err());
        assert_eq!(t.variables(&tpl).into_iter().collect::<Vec<_>>(), ["colour", "sku"]);
    }
}
