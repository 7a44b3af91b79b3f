//! Cluster-wide settings (#17): one store record (`Table::ClusterSettings`,
//! id "cluster"), absent until `--init` or `berth cluster update` writes it;
//! what is unset has its default.

use berth_proto::store::Object;
use berth_proto::store::object::Kind;
use berth_proto::v1::{ClusterSettings, Timestamps, UpdateClusterSettingsRequest};

use crate::store::{StateMachine, StoreError, Table};

/// The record's id.
pub const ID: &str = "cluster";
/// Ended tasks a slot keeps when nobody said otherwise (Swarm's default).
pub const DEFAULT_TASK_HISTORY_LIMIT: u32 = 5;

/// The stored settings, or defaults (version 0: not stored yet).
pub fn read(sm: &StateMachine) -> Result<ClusterSettings, StoreError> {
    Ok(
        match sm.get(Table::ClusterSettings, ID)?.and_then(|o| o.kind) {
            Some(Kind::ClusterSettings(s)) => s,
            _ => ClusterSettings {
                id: ID.into(),
                ..Default::default()
            },
        },
    )
}

/// Ended tasks kept per slot.
pub fn task_history_limit(settings: &ClusterSettings) -> usize {
    settings
        .task_history_limit
        .unwrap_or(DEFAULT_TASK_HISTORY_LIMIT) as usize
}

/// `settings` with what `update` sets (unset fields keep their value).
pub fn updated(
    mut settings: ClusterSettings,
    update: &UpdateClusterSettingsRequest,
    now_ms: i64,
) -> ClusterSettings {
    if let Some(limit) = update.task_history_limit {
        settings.task_history_limit = Some(limit);
    }
    let created_ms = settings
        .timestamps
        .as_ref()
        .map(|t| t.created_ms)
        .filter(|&c| c > 0)
        .unwrap_or(now_ms);
    settings.id = ID.into();
    settings.timestamps = Some(Timestamps {
        created_ms,
        updated_ms: now_ms,
    });
    settings
}

/// The record a new cluster starts with (`berth-controller --init`).
pub fn initial(task_history_limit: Option<u32>, now_ms: i64) -> Object {
    let mut settings = updated(
        ClusterSettings::default(),
        &UpdateClusterSettingsRequest { task_history_limit },
        now_ms,
    );
    settings.version = 1;
    Object {
        kind: Some(Kind::ClusterSettings(settings)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_is_swarms_default_and_updates_keep_the_rest() {
        assert_eq!(task_history_limit(&ClusterSettings::default()), 5);
        let first = updated(
            ClusterSettings::default(),
            &UpdateClusterSettingsRequest {
                task_history_limit: Some(2),
            },
            10,
        );
        assert_eq!(task_history_limit(&first), 2);
        let again = updated(first, &UpdateClusterSettingsRequest::default(), 20);
        assert_eq!(again.task_history_limit, Some(2));
        let ts = again.timestamps.expect("timestamps");
        assert_eq!((ts.created_ms, ts.updated_ms), (10, 20));
    }
}
