//! Loading a rule set from the file system: the rule files under a directory
//! (walked so that symlinks neither loop nor lead outside it), each read and handed
//! to a [`Loader`], which compiles it ([`super::compile`]) and collects the rules
//! and every problem across files (a duplicate id among them). Its own module
//! because it is the files-and-directories half of loading; turning one file's
//! text into a rule is the compiler's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::compile::FileCx;
use super::diagnostics::{Diagnostic, Diagnostics, line_col};
use super::{Rule, RuleSet, Strictness};

/// Collects rules and problems across files.
pub struct Loader {
    strictness: Strictness,
    /// Skip `[[test]]` tables (see [`Loader::without_tests`]).
    skip_tests: bool,
    today: (i32, u8, u8),
    rules: Vec<Rule>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    ids: HashMap<String, (PathBuf, usize, usize)>,
    /// The rules directory, resolved (see [`Loader::with_root`]).
    root: Option<PathBuf>,
}

impl Loader {
    pub fn new(strictness: Strictness, today: (i32, u8, u8)) -> Loader {
        Loader {
            strictness,
            skip_tests: false,
            today,
            rules: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            ids: HashMap::new(),
            root: None,
        }
    }

    /// The rules directory (resolved, as [`Path::canonicalize`] gives it): the
    /// `file` of a `[[test]]` must be inside it. Without one, each rule file's own
    /// directory is.
    pub fn with_root(mut self, root: &Path) -> Loader {
        self.root = Some(root.to_path_buf());
        self
    }

    /// A loader that leaves `[[test]]` tables alone: for runs that only detect,
    /// which need neither the tests' events in memory nor the time to read them
    /// (`rules check` and `rules test` read and check them).
    pub fn without_tests(mut self) -> Loader {
        self.skip_tests = true;
        self
    }

    /// Compiles one rule file's text.
    pub fn add(&mut self, path: &Path, src: &str) {
        let mut cx = FileCx {
            path,
            src,
            errors: Vec::new(),
            warnings: Vec::new(),
            strictness: self.strictness,
            skip_tests: self.skip_tests,
            today: self.today,
            inherited_expand: false,
            root: self.root.as_deref(),
        };
        let rule = cx.rule();
        let FileCx {
            mut errors,
            warnings,
            ..
        } = cx;
        errors.sort_by_key(|d| (d.line, d.col));
        self.warnings.extend(warnings);
        let clean = errors.is_empty();
        self.errors.extend(errors);
        if let (Some((rule, id_span)), true) = (rule, clean) {
            let (line, col) = line_col(src, id_span.start);
            if let Some((first, l, c)) = self.ids.get(&rule.id) {
                self.errors.push(Diagnostic {
                    path: path.to_path_buf(),
                    line,
                    col,
                    message: format!(
                        "duplicate rule id `{}`: already used at {}:{l}:{c}",
                        rule.id,
                        first.display()
                    ),
                });
                return;
            }
            self.ids
                .insert(rule.id.clone(), (path.to_path_buf(), line, col));
            self.rules.push(rule);
        }
    }

    pub fn error_at_file(&mut self, path: &Path, message: String) {
        self.errors.push(Diagnostic {
            path: path.to_path_buf(),
            line: 1,
            col: 1,
            message,
        });
    }

    pub fn warning_at_file(&mut self, path: &Path, message: String) {
        self.warnings.push(Diagnostic {
            path: path.to_path_buf(),
            line: 1,
            col: 1,
            message,
        });
    }

    pub fn finish(self) -> Result<RuleSet, Diagnostics> {
        if self.errors.is_empty() {
            Ok(RuleSet {
                rules: self.rules,
                warnings: self.warnings,
            })
        } else {
            Err(Diagnostics(self.errors))
        }
    }
}

/// [`RuleSet::load`] and [`RuleSet::load_without_tests`]: every rule file under
/// `path` (or the one file it names) through `loader`.
pub(super) fn load_with(path: &Path, loader: Loader) -> Result<RuleSet, Diagnostics> {
    let cannot = |e: std::io::Error| {
        Diagnostics(vec![Diagnostic {
            path: path.to_path_buf(),
            line: 1,
            col: 1,
            message: format!(
                "cannot read rules: {e} (set --rules or TRAILWATCH_RULES to the rules directory)"
            ),
        }])
    };
    let tree = walk(path).map_err(cannot)?;
    // The rules directory, resolved: rule files (through symlinks) and the
    // tests' `file`s must be inside it. For a single rule file, its directory.
    let root = if tree.single_file {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .canonicalize()
    } else {
        path.canonicalize()
    }
    .map_err(cannot)?;
    let mut loader = loader.with_root(&root);
    for d in &tree.skipped_dirs {
        loader.warning_at_file(
            d,
            "symlinked directory not followed: rules are read from real directories only (a link such as `loop -> .` would make the walk endless); link the rule files themselves instead".into(),
        );
    }
    for f in &tree.files {
        if !tree.single_file
            && f.symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
            && f.canonicalize().is_ok_and(|t| !t.starts_with(&root))
        {
            loader.error_at_file(
                f,
                format!(
                    "the symlink leads outside the rules directory {}: a symlinked rule file must point to a file inside it",
                    root.display()
                ),
            );
            continue;
        }
        match std::fs::read_to_string(f) {
            Ok(src) => loader.add(f, &src),
            Err(e) => loader.error_at_file(f, format!("cannot read rule file: {e}")),
        }
    }
    loader.finish()
}

/// `*.toml` files under `path` (except those named `_*`), sorted; `path` itself
/// when it is a file. Symlinked directories are not followed (see [`walk`]).
pub fn rule_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    Ok(walk(path)?.files)
}

/// What [`walk`] found.
struct RuleTree {
    files: Vec<PathBuf>,
    /// Symlinks to directories, not followed.
    skipped_dirs: Vec<PathBuf>,
    /// `path` named one file.
    single_file: bool,
}

/// The rule files under `path`, recursively, in path order. `path` itself is
/// followed when it is a symlink; below it, symlinks to directories are not (a
/// link such as `loop -> .` or `up -> ..` would make the walk endless, and a
/// directory tree has no cycles without them), while symlinks to files are kept:
/// [`RuleSet::load`] reads them when they point inside the rules directory.
fn walk(path: &Path) -> std::io::Result<RuleTree> {
    let meta = std::fs::metadata(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if !meta.is_dir() {
        return Ok(RuleTree {
            files: vec![path.to_path_buf()],
            skipped_dirs: Vec::new(),
            single_file: true,
        });
    }
    // Files whose name starts with `_` hold data for tools, not rules.
    let is_rule = |p: &Path| {
        p.extension().is_some_and(|x| x == "toml")
            && !p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('_'))
    };
    let mut files = Vec::new();
    let mut skipped_dirs = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let p = entry.path();
            // The entry itself, not what a symlink points to.
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(p);
            } else if kind.is_symlink() && p.is_dir() {
                skipped_dirs.push(p);
            } else if is_rule(&p) {
                files.push(p);
            }
        }
    }
    files.sort();
    skipped_dirs.sort();
    Ok(RuleTree {
        files,
        skipped_dirs,
        single_file: false,
    })
}
