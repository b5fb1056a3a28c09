//! Outpost's cross-backend conformance suite (SPEC §16): a library of async test functions, each
//! taking a [`Factory`] that makes fresh, empty databases, so that every backend and transport
//! (SQLite, PostgreSQL, the HTTP client in front of either) runs the same checks with one line:
//!
//! ```text
//! outpost_tests::conformance_suite!(outpost_tests::SqliteFactory::new());
//! ```
//!
//! A factory may be unavailable (PostgreSQL when `OUTPOST_TEST_POSTGRES` is unset): its tests then
//! return after saying so, except under `CI=true`, where they fail.
//!
//! The suite assumes the default [`outpost_api::Limits`] (SPEC §13). The hash test vectors it checks
//! live in [`vectors`], where the docs can cite them.
//!
//! For the end-to-end replication tests (`tests/replication.rs`, `tests/convergence.rs`): stoppable
//! servers standing for sites ([`peer`]), a fault-injecting TCP proxy ([`proxy`]), a target whose
//! writes fail on purpose ([`faults`]), and replica comparisons ([`replicas`]).
#![forbid(unsafe_code)]

use std::sync::Arc;

use async_trait::async_trait;
use outpost_api::Database;

pub mod faults;
pub mod http;
mod memory;
pub mod peer;
pub mod postgres;
pub mod proxy;
pub mod replicas;
mod sqlite;
pub mod suite;
pub mod support;
pub mod vectors;

pub use memory::MemoryFactory;
pub use sqlite::SqliteFactory;

/// Makes databases for the conformance suite.
#[async_trait]
pub trait Factory: Send + Sync {
    /// A fresh, empty database (no tables, update_seq 0), independent of every other one made.
    async fn fresh(&self) -> Arc<dyn Database>;

    /// Whether the backend can run here; a test with an unavailable factory returns at once (the factory
    /// has said why, or failed the test under `CI=true`: see [`postgres::test_url`]).
    fn available(&self) -> bool {
        true
    }
}

/// A factory that may be missing (a backend that cannot run here): the tests using it are skipped.
#[async_trait]
impl<F: Factory> Factory for Option<F> {
    async fn fresh(&self) -> Arc<dyn Database> {
        self.as_ref().expect("fresh() is only called on an available factory").fresh().await
    }

    fn available(&self) -> bool {
        self.as_ref().is_some_and(F::available)
    }
}

/// Expands to one `#[tokio::test]` per conformance test, each running it with a new factory made by
/// `$factory` (evaluated once per test, so it may own per-test resources such as a temp dir).
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@tests $factory;
            values::every_value_type_round_trips,
            values::non_canonical_values_come_back_canonical,
            values::stored_revisions_match_the_hash_vectors,
            writes::a_created_record_reads_back,
            writes::a_generated_id_is_a_uuid_v7,
            writes::the_record_count_follows_creates_deletes_and_revivals,
            writes::an_update_names_the_current_rev,
            writes::a_stale_rev_conflicts_with_the_winner,
            writes::creating_an_existing_record_conflicts,
            writes::retrying_a_write_returns_the_same_rev,
            writes::a_write_that_changes_nothing_returns_the_parent,
            writes::a_deleted_record_is_not_found,
            writes::creating_after_a_delete_extends_the_tombstone_branch,
            writes::a_delete_without_rev_deletes_the_winner,
            writes::records_list_in_id_order_by_pages,
            replication::identical_edits_on_two_databases_give_the_same_rev,
            replication::winner_and_conflicts_do_not_depend_on_arrival_order,
            replication::merge_fields_merges_disjoint_edits,
            replication::merge_fields_reports_overlapping_edits,
            replication::merge_fields_next_write_on_the_winner_closes_other_branches,
            replication::keep_conflicts_keeps_conflicts_until_resolved,
            replication::explicit_resolution_leaves_no_conflicts,
            replication::reconciled_state_does_not_depend_on_when_the_policy_changed,
            revisions::replaying_put_revisions_is_a_no_op,
            revisions::a_body_that_does_not_hash_to_its_rev_is_corrupt,
            revisions::ancestry_is_stored_as_stubs,
            revisions::a_parent_learned_later_links_a_truncated_ancestry,
            revisions::a_verified_parent_overrides_an_ancestrys_claim,
            revisions::get_revisions_and_revs_diff_answer_per_revision,
            revisions::get_revisions_of_a_whole_history_sends_each_line_once,
            revisions::revisions_sent_as_stored_are_the_json_of_get_revisions,
            feed::seqs_grow_by_one_per_revision_event,
            feed::changes_page_by_limit_and_report_pending,
            feed::a_record_updated_twice_appears_once_at_its_latest_seq,
            feed::a_table_filter_passes_the_table_and_its_definition,
            feed::chain_hashes_follow_the_spec_formula,
            feed::chain_hashes_commit_to_the_order_of_history,
            feed::chain_hash_at_zero_is_genesis_and_beyond_update_seq_is_not_found,
            feed::wait_for_changes_returns_at_once_when_behind,
            tables::tables_can_be_created_read_listed_updated_and_deleted,
            tables::creating_a_live_table_again_already_exists,
            tables::table_definitions_replicate_as_records,
            tables::field_declarations_bind_local_writes_only,
            tables::records_of_a_missing_or_deleted_table_are_not_found,
            tables::concurrent_creates_of_one_table_already_exist,
            bad_input::invalid_table_names_are_rejected,
            bad_input::invalid_record_ids_are_rejected,
            bad_input::ids_that_look_like_sql_or_paths_are_stored_verbatim,
            bad_input::invalid_attribute_names_are_rejected,
            bad_input::nesting_deeper_than_the_limit_is_invalid,
            bad_input::bodies_over_the_limit_are_too_large,
            bad_input::batches_over_the_limit_are_too_large,
            bad_input::page_limits_outside_the_range_are_invalid,
            bad_input::malformed_replicated_revisions_are_rejected,
            bad_input::protocol_inputs_are_bounded,
            batch::a_batch_reports_a_result_per_operation,
            batch::a_batch_takes_contiguous_seqs,
            batch::a_batch_sees_its_own_earlier_operations,
            batch::generated_ids_sort_in_the_batchs_order,
            events::events_list_every_revision_in_seq_order,
            events::events_from_seq_one_rebuild_every_tree,
            events::a_batch_commits_with_the_knowledge_it_proves,
            events::knowledge_rows_are_pruned_to_a_few_per_peer,
            tables::couch_tables_use_keep_conflicts,
            compaction::compaction_drops_old_bodies_and_changes_no_read,
            compaction::compaction_covers_the_tables_and_seqs_asked_for,
            foreign::foreign_revisions_go_only_into_couch_tables,
            foreign::foreign_revisions_replicate_and_replay,
            foreign::a_native_body_replaces_a_foreign_one,
            local::local_documents_keep_revisions_and_stay_local,
        );
    };
    (@tests $factory:expr; $($module:ident :: $test:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let factory = $factory;
                if !$crate::Factory::available(&factory) {
                    return;
                }
                $crate::suite::$module::$test(&factory).await;
            }
        )*
    };
}
