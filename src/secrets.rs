//! Merges listings into one set of secrets with the Go CLI's precedence:
//! within a folder listing, folder secrets beat imported ones and a later
//! import beats an earlier one; across `--path` options, a later path wins.
//! Pure: no I/O.

use std::collections::{HashMap, HashSet};

use crate::api::{Listing, RawSecret};
use crate::{debug, log};

/// Secrets in first-seen key order, each key once.
#[derive(Debug, Default)]
pub struct SecretSet {
    entries: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl SecretSet {
    /// Inserts or replaces a secret; returns true when it replaced one.
    pub fn insert(&mut self, key: String, value: String) -> bool {
        match self.index.get(&key) {
            Some(&position) => {
                self.entries[position].1 = value;
                true
            }
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
                false
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.index.get(key).map(|&position| self.entries[position].1.as_str())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    pub fn into_entries(self) -> Vec<(String, String)> {
        self.entries
    }
}

/// Folds one folder's listing into `set`. Imports go in first, in list
/// order, so that later imports and then the folder's own secrets replace
/// them. With `--recursive` a key can appear in several folders; the later
/// one in the response wins, as in the Go CLI, and the clash is logged.
pub fn merge_listing(set: &mut SecretSet, listing: Listing) {
    for import in listing.imports {
        let source = format!(
            "import of {}:{}",
            import.environment.as_deref().unwrap_or("?"),
            import.path.as_deref().unwrap_or("/")
        );
        for secret in import.secrets {
            insert_logged(set, secret, &source);
        }
    }
    // Keys seen in this folder listing, kept only when debug logging is on,
    // to tell a recursive clash from a folder secret replacing an import.
    let mut seen: Option<HashSet<String>> = log::enabled(log::Level::Debug).then(HashSet::new);
    let mut personal: Vec<RawSecret> = Vec::new();
    for secret in listing.secrets {
        if secret.kind.as_deref() == Some("personal") {
            personal.push(secret);
            continue;
        }
        if let Some(seen) = seen.as_mut() {
            if !seen.insert(secret.key.clone()) {
                let path = secret.path.as_deref().unwrap_or("/");
                debug!("secret {} appears in several folders; the one in {path} wins", secret.key);
            }
        }
        set.insert(secret.key, secret.value);
    }
    // A personal override beats the shared secret of the same name.
    for secret in personal {
        set.insert(secret.key, secret.value);
    }
}

fn insert_logged(set: &mut SecretSet, secret: RawSecret, source: &str) {
    let key = secret.key.clone();
    if set.insert(secret.key, secret.value) {
        debug!("secret {key} from {source} replaces an earlier one");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Import;

    fn secret(key: &str, value: &str, path: Option<&str>) -> RawSecret {
        RawSecret {
            key: key.into(),
            value: value.into(),
            path: path.map(str::to_string),
            kind: Some("shared".into()),
        }
    }

    fn import(secrets: Vec<RawSecret>) -> Import {
        Import { path: Some("/".into()), environment: Some("staging".into()), secrets }
    }

    #[test]
    fn folder_beats_imports() {
        let mut set = SecretSet::default();
        let listing = Listing {
            secrets: vec![secret("API_KEY", "dev", Some("/"))],
            imports: vec![import(vec![secret("API_KEY", "staging", None), secret("ONLY", "x", None)])],
        };
        merge_listing(&mut set, listing);
        assert_eq!(set.get("API_KEY"), Some("dev"));
        assert_eq!(set.get("ONLY"), Some("x"));
    }

    #[test]
    fn later_import_beats_earlier() {
        let mut set = SecretSet::default();
        let listing = Listing {
            secrets: vec![],
            imports: vec![import(vec![secret("K", "first", None)]), import(vec![secret("K", "second", None)])],
        };
        merge_listing(&mut set, listing);
        assert_eq!(set.get("K"), Some("second"));
    }

    #[test]
    fn later_path_beats_earlier() {
        let mut set = SecretSet::default();
        merge_listing(&mut set, Listing { secrets: vec![secret("K", "root", Some("/"))], imports: vec![] });
        merge_listing(&mut set, Listing { secrets: vec![secret("K", "backend", Some("/backend"))], imports: vec![] });
        assert_eq!(set.get("K"), Some("backend"));
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn personal_beats_shared() {
        let mut set = SecretSet::default();
        let mut personal = secret("K", "mine", Some("/"));
        personal.kind = Some("personal".into());
        let listing = Listing { secrets: vec![personal, secret("K", "team", Some("/"))], imports: vec![] };
        merge_listing(&mut set, listing);
        assert_eq!(set.get("K"), Some("mine"));
    }
}
