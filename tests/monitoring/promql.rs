//! Just enough of PromQL and of the Prometheus text format to tell which metric names, label names
//! and label values an expression uses, and which ones a `/metrics` page exports.

use std::collections::{BTreeMap, BTreeSet};

/// One label matcher: label, operator (`=`, `!=`, `=~`, `!~`), value.
pub(crate) type Matcher = (String, String, String);

/// What an expression uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Used {
    /// Every vector selector: the metric name and its matchers `(label, op, value)`.
    pub(crate) selectors: Vec<(String, Vec<Matcher>)>,
    /// Labels named in `by`, `without`, `on`, `ignoring`, `group_left` and `group_right` lists.
    pub(crate) grouping: BTreeSet<String>,
}

/// Words that are never metric names: binary operators, modifiers, and the aggregations (which may
/// stand before `by (…)` instead of before their parenthesis).
const KEYWORDS: [&str; 28] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "atan2",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a parenthesised list of label names.
const GROUPING: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names, matchers and grouping labels of `expr`. Grafana's variables (`$app`,
/// `$__rate_interval`) may appear in strings and ranges; they are skipped like any string or range.
pub(crate) fn scan(expr: &str) -> Used {
    let chars: Vec<char> = expr.chars().collect();
    let mut used = Used::default();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '[' {
            // A range or subquery duration.
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            // Matchers without a metric name (`{__name__=~"…"}`) are not used here.
            let (_, next) = matchers(&chars, i);
            i = next;
        } else if c == '$' {
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.' || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = skip_space(&chars, i);
            let lower = word.to_ascii_lowercase();
            if GROUPING.contains(&lower.as_str()) && chars.get(next) == Some(&'(') {
                let end = chars[next..].iter().position(|&c| c == ')').map_or(chars.len(), |p| next + p);
                let list: String = chars[next + 1..end].iter().collect();
                used.grouping
                    .extend(list.split(',').map(str::trim).filter(|l| !l.is_empty()).map(String::from));
                i = end + 1;
            } else if chars.get(next) == Some(&'(') || KEYWORDS.contains(&lower.as_str()) {
                // A function or aggregation, or an operator.
            } else if chars.get(next) == Some(&'{') {
                let (list, after) = matchers(&chars, next);
                used.selectors.push((word, list));
                i = after;
            } else {
                used.selectors.push((word, Vec::new()));
            }
        } else {
            i += 1;
        }
    }
    used
}

fn skip_space(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

/// The index after the string that opens at `i`.
fn skip_string(chars: &[char], i: usize) -> usize {
    string(chars, i).1
}

/// The string that opens at `i` (escapes resolved for `"` and `'`), and the index after it.
fn string(chars: &[char], i: usize) -> (String, usize) {
    let quote = chars[i];
    let mut out = String::new();
    let mut j = i + 1;
    while j < chars.len() && chars[j] != quote {
        if chars[j] == '\\' && quote != '`' && j + 1 < chars.len() {
            j += 1;
        }
        out.push(chars[j]);
        j += 1;
    }
    (out, j + 1)
}

/// The matchers of the `{…}` that opens at `i`, and the index after its `}`.
fn matchers(chars: &[char], i: usize) -> (Vec<Matcher>, usize) {
    let mut list = Vec::new();
    let mut j = i + 1;
    loop {
        j = skip_space(chars, j);
        match chars.get(j) {
            None => return (list, j),
            Some('}') => return (list, j + 1),
            Some(',') => j += 1,
            Some(_) => {
                let start = j;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                let label: String = chars[start..j].iter().collect();
                j = skip_space(chars, j);
                let op_start = j;
                while j < chars.len() && matches!(chars[j], '=' | '!' | '~') {
                    j += 1;
                }
                let op: String = chars[op_start..j].iter().collect();
                j = skip_space(chars, j);
                if label.is_empty() || op.is_empty() || !matches!(chars.get(j), Some('"' | '\'' | '`')) {
                    // Not a matcher this scanner knows: stop at the closing brace.
                    let end = chars[j..].iter().position(|&c| c == '}').map_or(chars.len(), |p| j + p);
                    return (list, end + 1);
                }
                let (value, after) = string(chars, j);
                list.push((label, op, value));
                j = after;
            }
        }
    }
}

/// What a `/metrics` page exports: each sample name with its label names and the values seen.
pub(crate) type Exported = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// Adds the samples of a Prometheus text exposition to `exported`.
pub(crate) fn parse_exposition(text: &str, exported: &mut Exported) {
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let chars: Vec<char> = line.chars().collect();
        let end = chars.iter().position(|&c| c == '{' || c == ' ').unwrap_or(chars.len());
        let name: String = chars[..end].iter().collect();
        let labels = exported.entry(name).or_default();
        if chars.get(end) == Some(&'{') {
            for (label, _, value) in matchers(&chars, end).0 {
                labels.entry(label).or_default().insert(value);
            }
        }
    }
}

/// The problems of `expr` (found at `place`) against `exported`; `target_labels` are the labels
/// Prometheus adds at scrape (any value). Checked: every metric name is exported; every matcher's
/// label is one that metric has; an `=`/`!=` matcher's literal value is one it exported; every
/// grouping label is exported by some metric or added at scrape.
pub(crate) fn problems(
    place: &str,
    expr: &str,
    exported: &Exported,
    target_labels: &BTreeSet<String>,
) -> Vec<String> {
    let used = scan(expr);
    let mut problems = Vec::new();
    for (metric, matchers) in &used.selectors {
        let Some(labels) = exported.get(metric) else {
            problems.push(format!("{place}: metric `{metric}` is not exported by any service"));
            continue;
        };
        for (label, op, value) in matchers {
            if target_labels.contains(label) {
                continue;
            }
            let Some(values) = labels.get(label) else {
                problems.push(format!("{place}: `{metric}` has no label `{label}`"));
                continue;
            };
            let literal = matches!(op.as_str(), "=" | "!=") && !value.contains('$');
            if literal && !values.contains(value) {
                problems
                    .push(format!("{place}: `{metric}` never has {label}=\"{value}\" (seen: {values:?})"));
            }
        }
    }
    for label in &used.grouping {
        let known =
            target_labels.contains(label) || exported.values().any(|labels| labels.contains_key(label));
        if !known {
            problems.push(format!("{place}: grouping label `{label}` is on no exported series"));
        }
    }
    problems
}
