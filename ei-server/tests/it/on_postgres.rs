//! The HTTP and notification tests again, with the server on PostgreSQL: each runs
//! the test of that name in `http` or `notify` through [`on_postgres`] (a fresh database
//! on `EI_TEST_PG`'s server; skipped with a message when it is unset). The tests that
//! restart a server on its RocksDB directory stay RocksDB-only.

use crate::common::on_postgres;

macro_rules! on_postgres {
    ($($module:ident::$test:ident),+ $(,)?) => {
        $(
            #[test]
            fn $test() {
                on_postgres(stringify!($test), crate::$module::$test);
            }
        )+
    };
}

on_postgres!(
    http::update_then_find_content_with_the_platform_samples,
    http::full_1000_post_sample_and_filters,
    http::update_lifecycle_over_http,
    http::every_fault_over_http,
    http::result_code_mode_answers_logical_errors_with_error,
    http::logical_address_check_can_be_turned_off_and_alternative_id_accepted,
    http::process_notification_stores_foreign_posts_and_drops_own,
    http::wsdl_xsd_and_operations_endpoints,
    http::concurrent_clients_on_overlapping_keys,
    notify::filters_order_and_only_effective_changes,
    notify::changes_to_one_key_arrive_in_order,
    notify::a_down_subscriber_catches_up_and_holds_back_nobody,
    notify::dead_letters_after_the_last_attempt_and_replay,
    notify::result_code_error_becomes_a_dead_letter_not_retried_and_admin_token_is_enforced,
    notify::an_idle_index_does_no_fsync_and_cursor_writes_are_batched,
    notify::refused_transactions_are_isolated_into_dead_letters_and_the_rest_delivered,
    notify::replay_sends_the_current_state_of_the_keys,
    notify::an_over_budget_subscriber_is_parked_and_a_resync_brings_it_back,
    notify::lag_is_alertable_per_subscriber,
    notify::after_the_grace_period_the_drop_is_explicit,
    notify::https_delivery_with_a_client_certificate,
    notify::a_redirect_is_not_followed,
);
