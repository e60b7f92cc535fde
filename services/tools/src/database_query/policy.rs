//! What a query may do: the SQLite authorizer policy. Reading is allowed;
//! everything that writes, attaches, configures or opens a transaction is not.

use rusqlite::hooks::AuthAction;

/// Allows `action` or says, in words, what it would have done.
pub(crate) fn check(action: &AuthAction<'_>) -> Result<(), String> {
    match action {
        AuthAction::Select
        | AuthAction::Read { .. }
        | AuthAction::Function { .. }
        | AuthAction::Recursive => Ok(()),
        AuthAction::Insert { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Delete { table_name }
            if table_name.starts_with("sqlite_") =>
        {
            Err("changing the schema".to_owned())
        }
        AuthAction::Insert { table_name } => Err(format!("inserting into {table_name}")),
        AuthAction::Update { table_name, .. } => Err(format!("updating {table_name}")),
        AuthAction::Delete { table_name } => Err(format!("deleting from {table_name}")),
        AuthAction::Attach { .. } => Err("ATTACH".to_owned()),
        AuthAction::Detach { .. } => Err("DETACH".to_owned()),
        AuthAction::Pragma { pragma_name, .. } => Err(format!("PRAGMA {pragma_name}")),
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => {
            Err("a transaction".to_owned())
        }
        AuthAction::AlterTable { table_name, .. } => Err(format!("altering {table_name}")),
        AuthAction::DropTable { table_name } | AuthAction::DropTempTable { table_name } => {
            Err(format!("dropping {table_name}"))
        }
        AuthAction::CreateTable { table_name } | AuthAction::CreateTempTable { table_name } => {
            Err(format!("creating table {table_name}"))
        }
        other => Err(format!("changing the schema or settings ({other:?})")),
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::hooks::TransactionOperation;

    use super::*;

    #[test]
    fn reading_is_allowed() {
        assert!(check(&AuthAction::Select).is_ok());
        assert!(check(&AuthAction::Recursive).is_ok());
        let read = AuthAction::Read {
            table_name: "guards",
            column_name: "badge_number",
        };
        assert!(check(&read).is_ok());
        let function = AuthAction::Function {
            function_name: "upper",
        };
        assert!(check(&function).is_ok());
    }

    #[test]
    fn writes_are_refused_with_the_table_named() {
        let insert = AuthAction::Insert {
            table_name: "guards",
        };
        assert_eq!(check(&insert), Err("inserting into guards".into()));
        let update = AuthAction::Update {
            table_name: "vault",
            column_name: "lock",
        };
        assert_eq!(check(&update), Err("updating vault".into()));
        let delete = AuthAction::Delete {
            table_name: "cameras",
        };
        assert_eq!(check(&delete), Err("deleting from cameras".into()));
    }

    #[test]
    fn writes_to_the_schema_table_are_refused_as_schema_changes() {
        let delete = AuthAction::Delete {
            table_name: "sqlite_master",
        };
        assert_eq!(check(&delete), Err("changing the schema".into()));
    }

    #[test]
    fn attach_pragma_transactions_and_schema_changes_are_refused() {
        let refused = [
            AuthAction::Attach { filename: "x.db" },
            AuthAction::Detach { database_name: "x" },
            AuthAction::Pragma {
                pragma_name: "writable_schema",
                pragma_value: Some("1"),
            },
            AuthAction::Transaction {
                operation: TransactionOperation::Begin,
            },
            AuthAction::DropTable {
                table_name: "guards",
            },
            AuthAction::CreateView { view_name: "v" },
            AuthAction::Reindex { index_name: "i" },
        ];
        for action in refused {
            assert!(check(&action).is_err(), "{action:?} was allowed");
        }
    }
}
