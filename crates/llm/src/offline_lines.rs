//! What the offline crew says: phrase tables per persona, in the seed's First National Heist Bank.
//!
//! Placeholders: `{speaker}` the last other speaker, `{detail}` a detail of their message,
//! `{argument}` a tool argument, `{tool}` a tool name, `{result}` a tool result line.

/// The kind of crew member a persona is, read from its name and role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Plans phases and timing.
    Planner,
    /// Cameras, alarms, files.
    Hacker,
    /// The vault door.
    Safecracker,
    /// The insider with database access.
    Mole,
    /// Anyone else.
    Crew,
}

impl Kind {
    /// The kind named by `name` or `role` (ignoring case), `Crew` if none is.
    pub(super) fn of(name: &str, role: &str) -> Self {
        let text = format!("{name} {role}").to_lowercase();
        [
            ("plan", Kind::Planner),
            ("hack", Kind::Hacker),
            ("safe", Kind::Safecracker),
            ("mole", Kind::Mole),
            ("inside", Kind::Mole),
        ]
        .into_iter()
        .find(|(word, _)| text.contains(word))
        .map_or(Kind::Crew, |(_, kind)| kind)
    }

    /// The tool this kind reaches for first, when it has it.
    pub(super) fn preferred_tool(self) -> &'static str {
        match self {
            Kind::Hacker => "file_reader",
            Kind::Mole => "database_query",
            Kind::Planner | Kind::Safecracker | Kind::Crew => "calculator",
        }
    }

    /// What this kind typically says about its own part of the job.
    pub(super) fn lines(self) -> &'static [&'static str] {
        match self {
            Kind::Planner => &[
                "We go in at 16:50 after the last guard round and are out before the time lock shuts at 17:30.",
                "Phase one is the lobby, phase two the vault corridor, phase three the exit through the loading dock.",
                "Everyone moves inside the CAM-04 and CAM-07 blind spots, and nobody improvises.",
                "I want a fallback route ready in case the guards change shift early.",
            ],
            Kind::Hacker => &[
                "I can loop the CAM-04 feed for four minutes without the monitoring desk noticing.",
                "The alarm panel polls every 90 seconds, so my window is tight but workable.",
                "CAM-07 leaves a blind spot by the service door, and that is our way into the corridor.",
                "Once I am on the security network, the guards' radios are the only thing I cannot touch.",
            ],
            Kind::Safecracker => &[
                "Sentinel 9 has a relocking plate, so I drill slow and cool, no heat near the bolts.",
                "The time lock only opens between 08:30 and 17:30, so the door work has to fit that window.",
                "Give me twenty quiet minutes at the door and Sentinel 9 is ours.",
                "I bring the borescope; the drill point has to be exact on a Sentinel 9.",
            ],
            Kind::Mole => &[
                "From the inside: the guards swap at the east desk and nobody checks badges for ten minutes.",
                "I can get us a cleaner's access card for the vault level.",
                "Management moved the vault audit to Thursday, which buys us a quiet afternoon.",
                "The new guard on the late shift still props the staff door open for his smoke break.",
            ],
            Kind::Crew => &[
                "I will keep the van running by the loading dock.",
                "I can cover the street side and call out any patrol car.",
                "Tell me where to stand and I will hold that position.",
            ],
        }
    }

    /// Round-0 sentences that lead into a tool call.
    pub(super) fn tool_intros(self, tool: &str) -> &'static [&'static str] {
        match (self, tool) {
            (Kind::Safecracker, "calculator") => &[
                "Before I promise anything on Sentinel 9, let me run the drill minutes.",
                "Let me work out how long the drill needs against the relocking plate.",
            ],
            (_, "calculator") => &[
                "Let me add up the timing before we lock the plan.",
                "I want the numbers for each phase summed before we commit.",
            ],
            (_, "file_reader") => &[
                "I want the facts on paper, so I am pulling {argument}.",
                "Let me check {argument} before anyone moves.",
            ],
            (_, "database_query") => &[
                "Let me look up {argument} in the bank's own records.",
                "I can check {argument} from inside the bank's system.",
            ],
            _ => &[
                "Let me check with {tool} first.",
                "One moment, I am asking {tool}.",
            ],
        }
    }
}

/// Arguments a persona of `kind` passes to `tool`.
pub(super) fn tool_arguments(kind: Kind, tool: &str) -> &'static [&'static str] {
    match (kind, tool) {
        (Kind::Safecracker, "calculator") => {
            &["45 * 3 + 20", "4 * 35 + 15", "2 * 60 + 45", "90 + 3 * 12"]
        }
        (_, "calculator") => &["12 + 4 + 25 + 6", "8 + 15 + 45 + 10", "5 + 20 + 35 + 7"],
        (_, "file_reader") => &[
            "security_system.md",
            "bank_layout.md",
            "vault_specs.md",
            "time_lock.md",
            "alarm_codes_memo.txt",
            "escape_routes.md",
            "guard_rotation.txt",
        ],
        (_, "database_query") => &[
            "guard schedule",
            "security employees",
            "access levels",
            "cameras",
            "shifts",
        ],
        _ => &["First National Heist Bank", "Sentinel 9"],
    }
}

/// Openers that answer the last speaker about a detail of their message.
pub(super) const REPLIES: &[&str] = &[
    "{speaker}, you mentioned {detail}, and that shapes my part.",
    "Good point on {detail}, {speaker}.",
    "I hear you on {detail}, {speaker}.",
    "{speaker} is right to raise {detail}.",
];

/// Openers when nobody else has spoken yet.
pub(super) const OPENERS: &[&str] = &[
    "Let's get First National Heist Bank right the first time.",
    "All of this comes down to the Sentinel 9 vault.",
    "We have one shot at First National Heist Bank.",
];

/// Round-1 sentences that report a tool's result.
pub(super) fn result_lines(kind: Kind, tool: &str) -> &'static [&'static str] {
    match (kind, tool) {
        (Kind::Safecracker, "calculator") => &[
            "The numbers say {result} minutes of drilling on Sentinel 9.",
            "{argument} comes to {result}: that is my drill budget in minutes.",
        ],
        (_, "calculator") => &[
            "The timing adds up to {result} minutes from entry to exit.",
            "{argument} makes {result} minutes in total.",
        ],
        (_, "file_reader") => &[
            "{argument} says: \"{result}\".",
            "Straight from {argument}: \"{result}\".",
        ],
        (_, "database_query") => &[
            "The records for {argument} start with {result}.",
            "Their system lists this for {argument}: {result}, among others.",
        ],
        _ => &["{tool} answered: {result}."],
    }
}

/// Round-1 sentences when the tool failed.
pub(super) const FAILURE_LINES: &[&str] = &[
    "The {tool} check on {argument} failed ({result}), so we plan without it for now.",
    "I could not get {argument} from {tool} ({result}); we work from what we know.",
];

/// Misdirection a saboteur slips in: plausible, and wrong.
pub(super) const MISDIRECTIONS: &[&str] = &[
    "I heard CAM-07 was serviced last week, so its blind spot is probably gone and the front lobby is safer.",
    "The time lock may release as early as 07:45, so an early start would be smarter.",
    "The guards skip the 16:00 round on Fridays, so we hardly need the camera loop.",
    "The loading dock is never watched, so a backup route is wasted effort.",
];

/// Details worth picking up from another agent's message, most specific first:
/// `(what the message says, how a reply names it)`.
pub(super) const DETAILS: &[(&str, &str)] = &[
    ("sentinel 9", "Sentinel 9"),
    ("cam-04", "CAM-04"),
    ("cam-07", "CAM-07"),
    ("time lock", "the time lock"),
    ("08:30", "the 08:30 opening"),
    ("17:30", "the 17:30 cut-off"),
    ("loading dock", "the loading dock"),
    ("alarm", "the alarms"),
    ("drill", "the drilling"),
    ("guard", "the guards"),
    ("camera", "the cameras"),
    ("vault", "the vault"),
    ("badge", "the badges"),
    ("shift", "the shifts"),
    ("escape", "the escape"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_read_from_names_and_roles() {
        assert_eq!(Kind::of("planner", "Strategic Planner"), Kind::Planner);
        assert_eq!(Kind::of("hacker", "Security Expert"), Kind::Hacker);
        assert_eq!(
            Kind::of("safecracker", "Vault Specialist"),
            Kind::Safecracker
        );
        assert_eq!(Kind::of("mole", "Inside Contact"), Kind::Mole);
        assert_eq!(Kind::of("agent_x", "Inside Man"), Kind::Mole);
        assert_eq!(Kind::of("driver", "Getaway Driver"), Kind::Crew);
    }

    #[test]
    fn every_table_has_entries_for_every_kind() {
        for kind in [
            Kind::Planner,
            Kind::Hacker,
            Kind::Safecracker,
            Kind::Mole,
            Kind::Crew,
        ] {
            assert!(!kind.lines().is_empty());
            for tool in ["calculator", "file_reader", "database_query", "lockpick"] {
                assert!(!kind.tool_intros(tool).is_empty());
                assert!(!tool_arguments(kind, tool).is_empty());
                assert!(!result_lines(kind, tool).is_empty());
            }
        }
    }
}
