//! Which document a name the sandbox did not find means: the same name with
//! another extension or case when only one document fits, else one of the
//! seed's document names; and, when none fits, the documents closest first.
//!
//! It only ever picks among the names the sandbox lists, so a name it
//! returns passes every check of the sandbox again when it is read.

/// The seed's document names (by stem, lower case) that have no document of
/// the same stem here, and the document that holds what the seed's held.
pub(crate) const SEED_ALIASES: &[(&str, &str)] = &[("timing_specs", "time_lock.md")];

/// At most this many documents are named in an error.
const MAX_LISTED: usize = 10;

/// What a name that is not a document's exact name may mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// One document: the same stem with another extension or case, or the
    /// seed's name for it.
    Found(String),
    /// Several documents fit equally well; the caller must choose.
    Ambiguous(Vec<String>),
    /// Nothing fits: every document, the closest name first.
    Missing(Vec<String>),
}

/// Finds what `requested` means among `documents` (the sandbox's listing).
pub(crate) fn lookup(requested: &str, documents: &[String]) -> Lookup {
    let wanted = stem(requested).to_lowercase();
    let same_stem: Vec<&String> = documents
        .iter()
        .filter(|name| stem(name).to_lowercase() == wanted)
        .collect();
    // Another case of the full name beats another extension: `Notes.MD` is
    // `notes.md` even when `notes.txt` exists too.
    let same_name: Vec<&String> = same_stem
        .iter()
        .copied()
        .filter(|name| name.to_lowercase() == requested.to_lowercase())
        .collect();
    let candidates = if same_name.is_empty() {
        same_stem
    } else {
        same_name
    };
    match candidates.as_slice() {
        [] => {}
        [one] => return Lookup::Found((*one).clone()),
        several => return Lookup::Ambiguous(several.iter().map(|n| (*n).clone()).collect()),
    }
    if let Some((_, target)) = SEED_ALIASES.iter().find(|(alias, _)| *alias == wanted)
        && documents.iter().any(|name| name == target)
    {
        return Lookup::Found((*target).to_owned());
    }
    Lookup::Missing(closest_first(&wanted, documents))
}

/// `documents` ordered by the edit distance of their stem to `wanted`
/// (lower case), then by name.
fn closest_first(wanted: &str, documents: &[String]) -> Vec<String> {
    let mut ranked: Vec<(usize, &String)> = documents
        .iter()
        .map(|name| (edit_distance(wanted, &stem(name).to_lowercase()), name))
        .collect();
    ranked.sort();
    ranked.into_iter().map(|(_, name)| name.clone()).collect()
}

/// `names` joined for a message, at most [`MAX_LISTED`] of them.
pub(crate) fn listing(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    let shown = names[..names.len().min(MAX_LISTED)].join(", ");
    match names.len().saturating_sub(MAX_LISTED) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// The name without its last extension (`notes.md` -> `notes`); a name
/// that is only an extension keeps it.
fn stem(name: &str) -> &str {
    match name.rfind('.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name,
    }
}

/// The Levenshtein distance between `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn documents() -> Vec<String> {
        [
            "bank_layout.md",
            "guard_rotation.txt",
            "notes.md",
            "notes.txt",
            "security_system.md",
            "time_lock.md",
            "vault_specs.md",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn found(name: &str) -> Lookup {
        Lookup::Found(name.to_owned())
    }

    #[test]
    fn another_extension_of_a_unique_stem_is_that_document() {
        assert_eq!(
            lookup("bank_layout.txt", &documents()),
            found("bank_layout.md")
        );
        assert_eq!(lookup("vault_specs", &documents()), found("vault_specs.md"));
        assert_eq!(
            lookup("guard_rotation.md", &documents()),
            found("guard_rotation.txt")
        );
    }

    #[test]
    fn another_case_is_that_document() {
        assert_eq!(
            lookup("Bank_Layout.MD", &documents()),
            found("bank_layout.md")
        );
        assert_eq!(lookup("NOTES.TXT", &documents()), found("notes.txt"));
    }

    #[test]
    fn another_extension_of_a_shared_stem_is_ambiguous() {
        assert_eq!(
            lookup("notes.pdf", &documents()),
            Lookup::Ambiguous(vec!["notes.md".into(), "notes.txt".into()])
        );
    }

    #[test]
    fn a_seed_name_without_a_stem_here_is_its_alias() {
        assert_eq!(
            lookup("timing_specs.txt", &documents()),
            found("time_lock.md")
        );
        assert_eq!(lookup("Timing_Specs", &documents()), found("time_lock.md"));
    }

    #[test]
    fn an_alias_whose_document_is_absent_is_missing() {
        let documents = vec!["notes.md".to_owned()];
        assert_eq!(
            lookup("timing_specs.txt", &documents),
            Lookup::Missing(vec!["notes.md".into()])
        );
    }

    #[test]
    fn an_unknown_name_lists_every_document_closest_first() {
        let Lookup::Missing(ranked) = lookup("vault_spec.pdf", &documents()) else {
            panic!("expected missing");
        };
        assert_eq!(ranked.len(), documents().len());
        assert_eq!(ranked[0], "vault_specs.md");
        let Lookup::Missing(ranked) = lookup("gaurd_rotaton", &documents()) else {
            panic!("expected missing");
        };
        assert_eq!(ranked[0], "guard_rotation.txt");
    }

    #[test]
    fn the_listing_is_capped() {
        let many: Vec<String> = (0..25).map(|i| format!("doc{i:02}.md")).collect();
        let text = listing(&many);
        assert!(text.starts_with("doc00.md, doc01.md"), "{text}");
        assert!(text.ends_with("doc09.md and 15 more"), "{text}");
        assert_eq!(listing(&[]), "none");
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("vault", "vault"), 0);
    }

    #[test]
    fn a_stem_drops_only_the_last_extension() {
        assert_eq!(stem("notes.md"), "notes");
        assert_eq!(stem("a.tar.gz"), "a.tar");
        assert_eq!(stem("README"), "README");
    }
}
