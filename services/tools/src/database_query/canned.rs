//! The seed's keyword questions ("guard schedule", "security employees"...)
//! mapped to canned SQL.

/// A question the tool answers without SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CannedQuery {
    /// The topic, as shown above the answer.
    pub(crate) title: &'static str,
    /// Words or phrases that pick this topic; the first is its name.
    pub(crate) keywords: &'static [&'static str],
    /// The query that answers it.
    pub(crate) sql: &'static str,
}

impl CannedQuery {
    /// The topic's name: its first keyword, e.g. `guard schedule`.
    pub(crate) fn name(&self) -> &'static str {
        self.keywords.first().copied().unwrap_or(self.title)
    }
}

/// The topics, in the order they are tried.
pub(crate) const CANNED: &[CannedQuery] = &[
    CannedQuery {
        title: "Guard schedule",
        keywords: &[
            "guard schedule",
            "guard schedules",
            "guard rotation",
            "schedule",
            "patrol",
            "patrols",
        ],
        sql: "SELECT e.name AS guard, g.badge_number AS badge, s.name AS shift, \
              s.start_time || '-' || s.end_time AS hours, gs.days, gs.post, \
              gs.patrol_interval_minutes AS patrol_every_min, gs.patrol_route \
              FROM guard_schedule gs \
              JOIN guards g ON g.id = gs.guard_id \
              JOIN employees e ON e.id = g.employee_id \
              JOIN shifts s ON s.id = gs.shift_id \
              ORDER BY gs.id",
    },
    CannedQuery {
        title: "Security employees",
        keywords: &["security employees", "security staff", "security"],
        sql: "SELECT e.name, e.role, e.access_level, s.name AS shift, \
              s.start_time || '-' || s.end_time AS hours \
              FROM employees e JOIN shifts s ON s.id = e.shift_id \
              WHERE e.department = 'Security' ORDER BY e.id",
    },
    CannedQuery {
        title: "Access levels",
        keywords: &["access levels", "access level", "access"],
        sql: "SELECT a.level, a.name, a.description, COUNT(e.id) AS employees \
              FROM access_levels a LEFT JOIN employees e ON e.access_level = a.level \
              GROUP BY a.level ORDER BY a.level",
    },
    CannedQuery {
        title: "Cameras",
        keywords: &["cameras", "camera", "cctv", "blind spots", "blind spot"],
        sql: "SELECT code, location, camera_type AS type, sweep_cycle_minutes AS sweep_min, \
              blind_spot_minutes AS blind_min, \
              CASE recording WHEN 1 THEN 'yes' ELSE 'OFFLINE' END AS recording, note \
              FROM cameras ORDER BY id",
    },
    CannedQuery {
        title: "Vault",
        keywords: &["vault", "vaults", "time lock"],
        sql: "SELECT name, location, manufacturer || ' ' || model AS model, door_weight_kg, \
              lock, time_lock_open, time_lock_close, open_days, dual_control_holders \
              FROM vault ORDER BY id",
    },
    CannedQuery {
        title: "Shifts",
        keywords: &["shifts", "shift"],
        sql: "SELECT s.name, s.start_time, s.end_time, s.handover_minutes, \
              COUNT(gs.id) AS guard_posts \
              FROM shifts s LEFT JOIN guard_schedule gs ON gs.shift_id = s.id \
              GROUP BY s.id ORDER BY s.id",
    },
    CannedQuery {
        title: "Alarm zones",
        keywords: &["alarm zones", "alarms", "alarm", "zones"],
        sql: "SELECT code, name, sensors, armed_hours, \
              CASE silent WHEN 1 THEN 'yes' ELSE 'no' END AS silent, \
              police_response_minutes AS police_min \
              FROM alarm_zones ORDER BY id",
    },
    CannedQuery {
        title: "Doors",
        keywords: &["doors", "door", "locks"],
        sql: "SELECT d.name, d.floor, d.lock_type, d.required_access_level AS level, \
              z.code AS zone, c.code AS camera \
              FROM doors d \
              LEFT JOIN alarm_zones z ON z.id = d.alarm_zone_id \
              LEFT JOIN cameras c ON c.id = d.camera_id \
              ORDER BY d.id",
    },
    CannedQuery {
        title: "Guards",
        keywords: &["guards", "guard"],
        sql: "SELECT e.name, g.badge_number AS badge, \
              CASE g.armed WHEN 1 THEN 'yes' ELSE 'no' END AS armed, \
              g.radio_channel, g.years_of_service \
              FROM guards g JOIN employees e ON e.id = g.employee_id ORDER BY g.id",
    },
    CannedQuery {
        title: "Employees",
        keywords: &["employees", "employee", "staff"],
        sql: "SELECT e.id, e.name, e.role, e.department, e.access_level, s.name AS shift \
              FROM employees e JOIN shifts s ON s.id = e.shift_id ORDER BY e.id",
    },
];

/// `question` as lowercase words, one space apart, padded with a space on each side.
fn words(question: &str) -> String {
    let words: String = question
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect();
    format!(
        " {} ",
        words.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}

/// The first topic one of whose keywords appears, as whole words, in `question`.
pub(crate) fn find(question: &str) -> Option<&'static CannedQuery> {
    let padded = words(question);
    CANNED.iter().find(|canned| {
        canned
            .keywords
            .iter()
            .any(|keyword| padded.contains(&format!(" {keyword} ")))
    })
}

/// The topic whose keyword `question` is, word for word (case and
/// punctuation aside), e.g. `Access levels?`.
pub(crate) fn exact(question: &str) -> Option<&'static CannedQuery> {
    let padded = words(question);
    let asked = padded.trim();
    CANNED
        .iter()
        .find(|canned| canned.keywords.contains(&asked))
}

/// The topic a would-be SELECT asks for, the seed's way: `SELECT guard
/// schedule`, `SELECT * FROM access levels`. Only a keyword as the whole
/// rest of the query counts, so a real query naming a table (`SELECT nope
/// FROM guards`) is never taken for a topic.
pub(crate) fn as_select(sql: &str) -> Option<&'static CannedQuery> {
    let padded = words(sql);
    let rest = padded.trim().strip_prefix("select")?;
    let rest = rest.trim_start();
    let rest = rest.strip_prefix("from ").unwrap_or(rest);
    if rest.is_empty() {
        return None;
    }
    exact(rest)
}

/// The topics' names, for error messages and the tool's description.
pub(crate) fn topics() -> String {
    CANNED
        .iter()
        .map(CannedQuery::name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn title(question: &str) -> Option<&'static str> {
        find(question).map(|canned| canned.title)
    }

    #[test]
    fn the_seed_questions_find_their_topics() {
        assert_eq!(title("guard schedule"), Some("Guard schedule"));
        assert_eq!(title("security employees"), Some("Security employees"));
        assert_eq!(title("security"), Some("Security employees"));
        assert_eq!(title("access levels"), Some("Access levels"));
    }

    #[test]
    fn keywords_are_found_inside_a_question_whatever_the_case() {
        assert_eq!(title("What is the GUARD SCHEDULE?"), Some("Guard schedule"));
        assert_eq!(title("Any camera blind spots?"), Some("Cameras"));
        assert_eq!(title("vault"), Some("Vault"));
        assert_eq!(title("list the shifts"), Some("Shifts"));
        assert_eq!(title("alarm zones"), Some("Alarm zones"));
        assert_eq!(title("which doors"), Some("Doors"));
        assert_eq!(title("guards"), Some("Guards"));
        assert_eq!(title("all employees"), Some("Employees"));
    }

    #[test]
    fn keywords_match_whole_words_only() {
        assert_eq!(title("vaulting"), None);
        assert_eq!(title("the weather"), None);
    }

    #[test]
    fn a_select_of_a_topic_is_that_topic_and_nothing_else_is() {
        let asked = |sql| as_select(sql).map(|canned| canned.title);
        assert_eq!(asked("SELECT guard schedule"), Some("Guard schedule"));
        assert_eq!(asked("select Access Levels;"), Some("Access levels"));
        assert_eq!(
            asked("SELECT * FROM security employees"),
            Some("Security employees")
        );
        assert_eq!(asked("SELECT nope FROM guards"), None);
        assert_eq!(asked("SELECT guard schedule FROM guards"), None);
        assert_eq!(asked("SELECT"), None);
        assert_eq!(asked("guard schedule"), None);
        assert_eq!(
            exact("Guard schedule?").map(|c| c.title),
            Some("Guard schedule")
        );
        assert_eq!(exact("the guard schedule"), None);
    }

    #[test]
    fn the_topics_name_every_canned_query() {
        assert_eq!(
            topics(),
            "guard schedule, security employees, access levels, cameras, vault, shifts, \
             alarm zones, doors, guards, employees"
        );
    }
}
