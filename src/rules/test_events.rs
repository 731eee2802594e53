//! The events of a `[[test]]` that names a `file`: where that file is (inside the
//! rules directory, however the name is written) and its records, read in any log
//! layout the scanner reads, gzip or not. Its own module because it is the one
//! part of compiling a rule that reaches the file system beyond the rule file.

use std::path::{Path, PathBuf};

use crate::input::decode;
use crate::input::records::RecordSplitter;

/// Where a test's `file` is: `rel` from the directory of the rule file
/// `rule_path`, which must stay inside the rules directory `root` (without one,
/// the rule file's own directory; see [`super::load::Loader::with_root`]).
/// Refused before anything is opened when it leads out as written (an absolute
/// path, `..`), and after resolving when a symlink leads out. `Err` is the message.
pub(super) fn test_file(
    rule_path: &Path,
    root: Option<&Path>,
    rel: &str,
) -> Result<PathBuf, String> {
    let dir = rule_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let cannot = |e: &dyn std::fmt::Display| format!("cannot use {}: {e}", dir.join(rel).display());
    let dir = dir.canonicalize().map_err(|e| cannot(&e))?;
    let root = root.unwrap_or(&dir);
    let outside = || {
        format!(
            "`{rel}` is outside the rules directory {}: a test file is named relative to the rule file and must be inside that directory",
            root.display()
        )
    };
    if !lexically_normal(&dir.join(rel)).starts_with(root) {
        return Err(outside());
    }
    let file = dir.join(rel).canonicalize().map_err(|e| cannot(&e))?;
    if !file.starts_with(root) {
        return Err(outside());
    }
    if !std::fs::metadata(&file).map_err(|e| cannot(&e))?.is_file() {
        return Err(cannot(&"not a regular file"));
    }
    Ok(file)
}

/// `p` with `.` and `..` components resolved as written (no file system access).
fn lexically_normal(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Reads test events from a file in any supported log layout (gzip or not).
pub(super) fn read_event_file(path: &Path) -> Result<Vec<serde_json::Value>, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let r = decode::open(f, decode::DEFAULT_MAX_DECOMPRESSED).map_err(|e| e.to_string())?;
    let mut split = RecordSplitter::new(r, crate::input::records::DEFAULT_MAX_RECORD_BYTES);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while let Some(slot) = split.next_into(&mut buf).map_err(|e| e.to_string())? {
        let v: serde_json::Value =
            serde_json::from_slice(&buf).map_err(|e| format!("record {}: {e}", slot.index))?;
        out.push(v);
    }
    Ok(out)
}
