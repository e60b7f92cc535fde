//! The database's tables and columns, as the tool tells them: in its
//! description, and in SQL errors, so that a caller who guessed a name can
//! correct it.

use super::intel_db::IntelDb;
use crate::tool::ToolError;

/// The most characters a schema hint in an error takes.
const MAX_HINT_CHARS: usize = 400;

/// One table and its columns.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Table {
    name: String,
    columns: Vec<String>,
}

impl Table {
    /// `name(column, ...)`.
    fn described(&self) -> String {
        format!("{}({})", self.name, self.columns.join(", "))
    }

    /// Whether `words` (lowercase) name this table, or it without or with a final `s`.
    fn named_in(&self, words: &[String]) -> bool {
        let name = self.name.to_ascii_lowercase();
        let singular = name.strip_suffix('s').unwrap_or(&name);
        words
            .iter()
            .any(|w| *w == name || w == singular || w.strip_suffix('s') == Some(&name))
    }
}

/// Every table of the database with its columns, in name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schema {
    tables: Vec<Table>,
}

impl Schema {
    /// Reads the tables and columns of `db`.
    pub(crate) fn read(db: &IntelDb) -> Result<Self, ToolError> {
        let names = db.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
            1_000,
        )?;
        let mut tables = Vec::with_capacity(names.rows.len());
        for name in names.rows.iter().filter_map(|row| row.first()?.as_str()) {
            let quoted = name.replace('"', "\"\"");
            let columns = db
                .query(&format!("SELECT * FROM \"{quoted}\" LIMIT 0"), 1)?
                .columns;
            tables.push(Table {
                name: name.to_owned(),
                columns,
            });
        }
        Ok(Self { tables })
    }

    /// Every table with its columns, e.g. `shifts(id, name, ...), ...`.
    pub(crate) fn all(&self) -> String {
        self.tables
            .iter()
            .map(Table::described)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A short hint for a query `sql` that failed: the tables it names
    /// (nearly: `guard` names `guards`) with their columns and the others by
    /// name; if it names none, every table with its columns while the hint
    /// stays within [`MAX_HINT_CHARS`], by name after that.
    pub(crate) fn hint(&self, sql: &str) -> String {
        let words: Vec<String> = sql
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        let (named, others): (Vec<&Table>, Vec<&Table>) =
            self.tables.iter().partition(|table| table.named_in(&words));
        let names = |tables: &[&Table]| {
            tables
                .iter()
                .map(|table| table.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !named.is_empty() {
            let described: Vec<String> = named.iter().map(|table| table.described()).collect();
            let mut hint = format!("the tables are {}", described.join(", "));
            if !others.is_empty() {
                hint.push_str(&format!(" (also {})", names(&others)));
            }
            return hint;
        }
        let mut parts: Vec<String> = Vec::with_capacity(self.tables.len());
        let mut used = 0;
        for table in &self.tables {
            let described = table.described();
            let part = if used + described.len() <= MAX_HINT_CHARS {
                described
            } else {
                table.name.clone()
            };
            used += part.len() + 2;
            parts.push(part);
        }
        format!("the tables are {}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::clock::SystemClock;
    use crate::config::{IntelDbConfig, ToolsConfig};
    use crate::database_query::intel_db::Limits;

    fn schema() -> Schema {
        let limits = Limits {
            time_limit: Duration::from_secs(2),
            ..Limits::from_config(&ToolsConfig::default())
        };
        let db = IntelDb::open(&IntelDbConfig::Temporary, limits, Arc::new(SystemClock)).unwrap();
        Schema::read(&db).unwrap()
    }

    #[test]
    fn every_table_is_described_with_its_columns() {
        let all = schema().all();
        assert!(
            all.starts_with("access_levels(level, name, description), "),
            "{all}"
        );
        assert!(
            all.contains("guards(id, employee_id, badge_number"),
            "{all}"
        );
        assert!(all.contains(", shift)"), "{all}");
    }

    #[test]
    fn a_hint_names_the_tables_the_query_names_first_and_stays_short() {
        let schema = schema();
        for sql in ["SELECT guard FROM guards", "SELECT x", "SELECT * FROM loot"] {
            let hint = schema.hint(sql);
            assert!(
                hint.len() <= MAX_HINT_CHARS + 100,
                "{} chars: {hint}",
                hint.len()
            );
            for table in &schema.tables {
                assert!(hint.contains(&table.name), "{hint} misses {}", table.name);
            }
        }
        let hint = schema.hint("SELECT guard FROM guards");
        assert!(
            hint.starts_with(
                "the tables are guards(id, employee_id, badge_number, armed, \
                              radio_channel, years_of_service, name, shift) (also access_levels, "
            ),
            "{hint}"
        );
        let none_named = schema.hint("SELECT 1 FROM loot");
        assert!(
            none_named.starts_with("the tables are access_levels(level, "),
            "{none_named}"
        );
        let singular = schema.hint("SELECT * FROM guard");
        assert!(
            singular.starts_with("the tables are guards(id, "),
            "{singular}"
        );
        let plural = schema.hint("SELECT * FROM vaults");
        assert!(plural.starts_with("the tables are vault("), "{plural}");
    }
}
