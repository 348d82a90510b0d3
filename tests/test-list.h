/* Every C test, one line each; tests/CMakeLists.txt registers one ctest per TEST_DECLARE. */
#pragma once

#define TEST_DECLARE(name) int run_test_##name(void);

TEST_DECLARE(base_vec)
TEST_DECLARE(base_errors_and_hash)
TEST_DECLARE(pool_jobs_once)
TEST_DECLARE(pool_one_thread)
TEST_DECLARE(pool_caller_takes_part)
TEST_DECLARE(simd_agree)
TEST_DECLARE(simd_select)
TEST_DECLARE(simd_judge_agree)
TEST_DECLARE(simd_find_agree)
TEST_DECLARE(idmap_random)
TEST_DECLARE(idmap_dense)
TEST_DECLARE(idmap_trim)
TEST_DECLARE(index_grid_random)
TEST_DECLARE(index_quadtree_random)
TEST_DECLARE(index_grid_crowd)
TEST_DECLARE(index_quadtree_crowd)
TEST_DECLARE(index_grid_huge_map)
TEST_DECLARE(space_bad_config)
TEST_DECLARE(space_split_tick)
TEST_DECLARE(space_errors)
TEST_DECLARE(space_auto_index)
TEST_DECLARE(space_memory)
TEST_DECLARE(space_out_of_memory)
TEST_DECLARE(space_compact)
TEST_DECLARE(space_move_many)
TEST_DECLARE(space_sees_last_tick)
TEST_DECLARE(space_events_in_chunks)
TEST_DECLARE(space_empty_memory)
TEST_DECLARE(space_regions_bounded)
TEST_DECLARE(space_memory_drains)
TEST_DECLARE(space_memory_exact)
TEST_DECLARE(oracle_uniform)
TEST_DECLARE(oracle_shape_phases)
TEST_DECLARE(oracle_clustered)
TEST_DECLARE(oracle_lattice_ties)
TEST_DECLARE(oracle_lattice_hysteresis)
TEST_DECLARE(oracle_entity_hysteresis)
TEST_DECLARE(oracle_entity_hysteresis_only)
TEST_DECLARE(oracle_entity_hysteresis_lattice)
TEST_DECLARE(oracle_entity_hysteresis_compaction)
TEST_DECLARE(oracle_lod)
TEST_DECLARE(oracle_lod_high_ids)
TEST_DECLARE(oracle_lod_lattice)
TEST_DECLARE(oracle_relations)
TEST_DECLARE(oracle_relations_rule)
TEST_DECLARE(oracle_relations_lattice)
TEST_DECLARE(oracle_relations_compaction)
TEST_DECLARE(oracle_always)
TEST_DECLARE(oracle_always_rule)
TEST_DECLARE(oracle_always_lattice)
TEST_DECLARE(oracle_reasons)
TEST_DECLARE(oracle_reasons_lattice)
TEST_DECLARE(oracle_caps)
TEST_DECLARE(oracle_caps_relevance)
TEST_DECLARE(oracle_caps_lattice)
TEST_DECLARE(oracle_always_far_stays)
TEST_DECLARE(oracle_groups)
TEST_DECLARE(oracle_groups_lattice)
TEST_DECLARE(oracle_groups_compaction)
TEST_DECLARE(oracle_queries)
TEST_DECLARE(oracle_regions)
TEST_DECLARE(oracle_regions_lattice)
TEST_DECLARE(oracle_regions_compaction)
TEST_DECLARE(oracle_3d_uniform)
TEST_DECLARE(oracle_3d)
TEST_DECLARE(oracle_3d_lattice)
TEST_DECLARE(oracle_3d_compaction)
TEST_DECLARE(oracle_queries_lattice)
TEST_DECLARE(oracle_queries_compaction)
TEST_DECLARE(oracle_caps_compaction)
TEST_DECLARE(oracle_edges)
TEST_DECLARE(oracle_radii)
TEST_DECLARE(oracle_spot)
TEST_DECLARE(oracle_hysteresis)
TEST_DECLARE(oracle_layers)
TEST_DECLARE(oracle_churn_high_ids)
TEST_DECLARE(oracle_switch_index)
TEST_DECLARE(oracle_compaction)
TEST_DECLARE(oracle_sparse_seams)
TEST_DECLARE(oracle_lattice_walk)
TEST_DECLARE(oracle_fast_walkers)
TEST_DECLARE(oracle_rule)
TEST_DECLARE(oracle_rule_crowd)
TEST_DECLARE(oracle_rule_uniform)
TEST_DECLARE(oracle_handoff)
TEST_DECLARE(lua_rule_props)
TEST_DECLARE(lua_owner)
TEST_DECLARE(lua_set_hysteresis)
TEST_DECLARE(lua_set_lod)
TEST_DECLARE(lua_relate)
TEST_DECLARE(lua_set_always)
TEST_DECLARE(lua_set_cap)
TEST_DECLARE(lua_query)
TEST_DECLARE(lua_3d)
TEST_DECLARE(lua_leave_reasons)
TEST_DECLARE(lua_props_belong_to_entities)
TEST_DECLARE(lua_lifecycle_hooks)
TEST_DECLARE(lua_regions)
TEST_DECLARE(lua_handlers_emit)
TEST_DECLARE(lua_big_ids)
TEST_DECLARE(lua_raising_handler)
TEST_DECLARE(lua_loop_jit)
TEST_DECLARE(lua_loop_interpreted)
TEST_DECLARE(lua_memory_bomb)
TEST_DECLARE(lua_budget_library)
TEST_DECLARE(lua_spike_policy)
TEST_DECLARE(lua_sandbox)
TEST_DECLARE(lua_reload)
TEST_DECLARE(lua_reload_refused_changes_nothing)
TEST_DECLARE(lua_reload_under_load)
TEST_DECLARE(lua_modules_cjson)
TEST_DECLARE(lua_state_round_trip)
TEST_DECLARE(lua_state_refused)
TEST_DECLARE(lua_state_bad_input)
TEST_DECLARE(lua_restore_prop_no_touch)
TEST_DECLARE(lua_props_all)
TEST_DECLARE(lua_parallel_ticks)
TEST_DECLARE(server_two_clients)
TEST_DECLARE(server_batch_oracle)
TEST_DECLARE(server_batch_oracle_tick_order)
TEST_DECLARE(server_split_tick_oracle)
TEST_DECLARE(server_parallel_spaces)
TEST_DECLARE(server_bad_input)
TEST_DECLARE(server_hello_rules)
TEST_DECLARE(server_resume_and_grace)
TEST_DECLARE(server_slow_consumer)
TEST_DECLARE(server_admin_scripts)
TEST_DECLARE(server_config_watch)
TEST_DECLARE(server_record_replay)
TEST_DECLARE(server_script_owners)
TEST_DECLARE(server_lifecycle_hooks)
TEST_DECLARE(server_regions)
TEST_DECLARE(server_3d)
TEST_DECLARE(server_entity_hysteresis)
TEST_DECLARE(server_lod)
TEST_DECLARE(server_relations)
TEST_DECLARE(server_leave_reasons)
TEST_DECLARE(server_caps)
TEST_DECLARE(server_groups)
TEST_DECLARE(server_query)
TEST_DECLARE(server_tokens_unpredictable)
TEST_DECLARE(server_one_reply_per_request)
TEST_DECLARE(server_errors_name_requests)
TEST_DECLARE(server_moves_one_answer)
TEST_DECLARE(server_adds_one_answer)
TEST_DECLARE(server_ok_names_tick)
TEST_DECLARE(server_space_permissions)
TEST_DECLARE(server_drop_many_entities)
TEST_DECLARE(server_session_limits)
TEST_DECLARE(server_session_memory_bounded)
TEST_DECLARE(server_connection_deadlines)
TEST_DECLARE(server_slow_consumer_told)
TEST_DECLARE(server_bounded_shutdown)
TEST_DECLARE(server_admin_socket_kept)
TEST_DECLARE(server_quiet)
TEST_DECLARE(server_frame_rate)
TEST_DECLARE(server_hostile_clients)
TEST_DECLARE(server_watch_subfolders)
TEST_DECLARE(server_why_faulted)
TEST_DECLARE(server_prop_limits)
TEST_DECLARE(etcd_kv)
TEST_DECLARE(etcd_failures)
TEST_DECLARE(etcd_mirror)
TEST_DECLARE(etcd_lease_keepalive)
TEST_DECLARE(etcd_failover_limits)
TEST_DECLARE(etcd_txn_watch)
TEST_DECLARE(etcd_dead_peer)
TEST_DECLARE(etcd_mirror_writer_kill)
TEST_DECLARE(etcd_mirror_follows_after_resync)
TEST_DECLARE(etcd_mirror_resync_recreated_key)
TEST_DECLARE(etcd_mirror_history_reset)
TEST_DECLARE(etcd_watch_stop_inside)
TEST_DECLARE(etcd_long_keys)
TEST_DECLARE(etcd_backoff_accept_close)
TEST_DECLARE(etcd_host_names)
TEST_DECLARE(etcd_cluster_partition)
TEST_DECLARE(etcd_health)
TEST_DECLARE(etcd_tls)
TEST_DECLARE(etcd_auth)
TEST_DECLARE(server_on_etcd)
TEST_DECLARE(server_etcd_reconfigure_moving)
TEST_DECLARE(server_etcd_documents)
TEST_DECLARE(server_etcd_zones)
TEST_DECLARE(server_cluster_unbuildable_space)
TEST_DECLARE(server_move_exact)
TEST_DECLARE(server_move_drain_and_failures)
TEST_DECLARE(server_move_rebalance_on_join)
TEST_DECLARE(server_move_entity_settings)
TEST_DECLARE(server_move_source_dies)
TEST_DECLARE(server_move_etcd_stops)
TEST_DECLARE(server_unused_fields_ignored)
TEST_DECLARE(sync_forget_keeps_others)
TEST_DECLARE(server_ownership_log_release)
TEST_DECLARE(server_cluster_etcd_faults)
TEST_DECLARE(server_etcd_nospace)
TEST_DECLARE(server_etcd_tls_auth)
TEST_DECLARE(server_cluster_three_nodes)
TEST_DECLARE(server_cluster_client_redirects)
TEST_DECLARE(server_cluster_client_failover)
TEST_DECLARE(server_etcd_three_members)
TEST_DECLARE(etcd_no_false_history_reset)
TEST_DECLARE(server_etcd_health)
TEST_DECLARE(schema_entity_cases)
TEST_DECLARE(schema_entity_differential)
TEST_DECLARE(schema_space_cases)

#define TEST_LIST \
    TEST_ENTRY(base_vec) \
    TEST_ENTRY(base_errors_and_hash) \
    TEST_ENTRY(pool_jobs_once) \
    TEST_ENTRY(pool_one_thread) \
    TEST_ENTRY(pool_caller_takes_part) \
    TEST_ENTRY(simd_agree) \
    TEST_ENTRY(simd_select) \
    TEST_ENTRY(simd_judge_agree) \
    TEST_ENTRY(simd_find_agree) \
    TEST_ENTRY(idmap_random) \
    TEST_ENTRY(idmap_dense) \
    TEST_ENTRY(idmap_trim) \
    TEST_ENTRY(index_grid_random) \
    TEST_ENTRY(index_quadtree_random) \
    TEST_ENTRY(index_grid_crowd) \
    TEST_ENTRY(index_quadtree_crowd) \
    TEST_ENTRY(index_grid_huge_map) \
    TEST_ENTRY(space_bad_config) \
    TEST_ENTRY(space_split_tick) \
    TEST_ENTRY(space_errors) \
    TEST_ENTRY(space_auto_index) \
    TEST_ENTRY(space_memory) \
    TEST_ENTRY(space_out_of_memory) \
    TEST_ENTRY(space_compact) \
    TEST_ENTRY(space_move_many) \
    TEST_ENTRY(space_sees_last_tick) \
    TEST_ENTRY(space_events_in_chunks) \
    TEST_ENTRY(space_empty_memory) \
    TEST_ENTRY(space_regions_bounded) \
    TEST_ENTRY(space_memory_drains) \
    TEST_ENTRY(space_memory_exact) \
    TEST_ENTRY(oracle_uniform) \
    TEST_ENTRY(oracle_shape_phases) \
    TEST_ENTRY(oracle_clustered) \
    TEST_ENTRY(oracle_lattice_ties) \
    TEST_ENTRY(oracle_lattice_hysteresis) \
    TEST_ENTRY(oracle_entity_hysteresis) \
    TEST_ENTRY(oracle_entity_hysteresis_only) \
    TEST_ENTRY(oracle_entity_hysteresis_lattice) \
    TEST_ENTRY(oracle_entity_hysteresis_compaction) \
    TEST_ENTRY(oracle_lod) \
    TEST_ENTRY(oracle_lod_high_ids) \
    TEST_ENTRY(oracle_lod_lattice) \
    TEST_ENTRY(oracle_relations) \
    TEST_ENTRY(oracle_relations_rule) \
    TEST_ENTRY(oracle_relations_lattice) \
    TEST_ENTRY(oracle_relations_compaction) \
    TEST_ENTRY(oracle_always) \
    TEST_ENTRY(oracle_always_rule) \
    TEST_ENTRY(oracle_always_lattice) \
    TEST_ENTRY(oracle_reasons) \
    TEST_ENTRY(oracle_reasons_lattice) \
    TEST_ENTRY(oracle_caps) \
    TEST_ENTRY(oracle_caps_relevance) \
    TEST_ENTRY(oracle_caps_lattice) \
    TEST_ENTRY(oracle_always_far_stays) \
    TEST_ENTRY(oracle_groups) \
    TEST_ENTRY(oracle_groups_lattice) \
    TEST_ENTRY(oracle_groups_compaction) \
    TEST_ENTRY(oracle_queries) \
    TEST_ENTRY(oracle_regions) \
    TEST_ENTRY(oracle_regions_lattice) \
    TEST_ENTRY(oracle_regions_compaction) \
    TEST_ENTRY(oracle_3d_uniform) \
    TEST_ENTRY(oracle_3d) \
    TEST_ENTRY(oracle_3d_lattice) \
    TEST_ENTRY(oracle_3d_compaction) \
    TEST_ENTRY(oracle_queries_lattice) \
    TEST_ENTRY(oracle_queries_compaction) \
    TEST_ENTRY(oracle_caps_compaction) \
    TEST_ENTRY(oracle_edges) \
    TEST_ENTRY(oracle_radii) \
    TEST_ENTRY(oracle_spot) \
    TEST_ENTRY(oracle_hysteresis) \
    TEST_ENTRY(oracle_layers) \
    TEST_ENTRY(oracle_churn_high_ids) \
    TEST_ENTRY(oracle_switch_index) \
    TEST_ENTRY(oracle_compaction) \
    TEST_ENTRY(oracle_sparse_seams) \
    TEST_ENTRY(oracle_lattice_walk) \
    TEST_ENTRY(oracle_fast_walkers) \
    TEST_ENTRY(oracle_rule) \
    TEST_ENTRY(oracle_rule_crowd) \
    TEST_ENTRY(oracle_rule_uniform) \
    TEST_ENTRY(oracle_handoff) \
    TEST_ENTRY(lua_rule_props) \
    TEST_ENTRY(lua_owner) \
    TEST_ENTRY(lua_set_hysteresis) \
    TEST_ENTRY(lua_set_lod) \
    TEST_ENTRY(lua_relate) \
    TEST_ENTRY(lua_set_always) \
    TEST_ENTRY(lua_set_cap) \
    TEST_ENTRY(lua_query) \
    TEST_ENTRY(lua_3d) \
    TEST_ENTRY(lua_leave_reasons) \
    TEST_ENTRY(lua_props_belong_to_entities) \
    TEST_ENTRY(lua_lifecycle_hooks) \
    TEST_ENTRY(lua_regions) \
    TEST_ENTRY(lua_handlers_emit) \
    TEST_ENTRY(lua_big_ids) \
    TEST_ENTRY(lua_raising_handler) \
    TEST_ENTRY(lua_loop_jit) \
    TEST_ENTRY(lua_loop_interpreted) \
    TEST_ENTRY(lua_memory_bomb) \
    TEST_ENTRY(lua_budget_library) \
    TEST_ENTRY(lua_spike_policy) \
    TEST_ENTRY(lua_sandbox) \
    TEST_ENTRY(lua_reload) \
    TEST_ENTRY(lua_reload_refused_changes_nothing) \
    TEST_ENTRY(lua_reload_under_load) \
    TEST_ENTRY(lua_modules_cjson) \
    TEST_ENTRY(lua_state_round_trip) \
    TEST_ENTRY(lua_state_refused) \
    TEST_ENTRY(lua_state_bad_input) \
    TEST_ENTRY(lua_restore_prop_no_touch) \
    TEST_ENTRY(lua_props_all) \
    TEST_ENTRY(lua_parallel_ticks) \
    TEST_ENTRY(server_two_clients) \
    TEST_ENTRY(server_batch_oracle) \
    TEST_ENTRY(server_batch_oracle_tick_order) \
    TEST_ENTRY(server_split_tick_oracle) \
    TEST_ENTRY(server_parallel_spaces) \
    TEST_ENTRY(server_bad_input) \
    TEST_ENTRY(server_hello_rules) \
    TEST_ENTRY(server_resume_and_grace) \
    TEST_ENTRY(server_slow_consumer) \
    TEST_ENTRY(server_admin_scripts) \
    TEST_ENTRY(server_config_watch) \
    TEST_ENTRY(server_record_replay) \
    TEST_ENTRY(server_script_owners) \
    TEST_ENTRY(server_lifecycle_hooks) \
    TEST_ENTRY(server_regions) \
    TEST_ENTRY(server_3d) \
    TEST_ENTRY(server_entity_hysteresis) \
    TEST_ENTRY(server_lod) \
    TEST_ENTRY(server_relations) \
    TEST_ENTRY(server_leave_reasons) \
    TEST_ENTRY(server_caps) \
    TEST_ENTRY(server_groups) \
    TEST_ENTRY(server_query) \
    TEST_ENTRY(server_tokens_unpredictable) \
    TEST_ENTRY(server_one_reply_per_request) \
    TEST_ENTRY(server_errors_name_requests) \
    TEST_ENTRY(server_moves_one_answer) \
    TEST_ENTRY(server_adds_one_answer) \
    TEST_ENTRY(server_ok_names_tick) \
    TEST_ENTRY(server_space_permissions) \
    TEST_ENTRY(server_drop_many_entities) \
    TEST_ENTRY(server_session_limits) \
    TEST_ENTRY(server_session_memory_bounded) \
    TEST_ENTRY(server_connection_deadlines) \
    TEST_ENTRY(server_slow_consumer_told) \
    TEST_ENTRY(server_bounded_shutdown) \
    TEST_ENTRY(server_admin_socket_kept) \
    TEST_ENTRY(server_quiet) \
    TEST_ENTRY(server_frame_rate) \
    TEST_ENTRY(server_hostile_clients) \
    TEST_ENTRY(server_watch_subfolders) \
    TEST_ENTRY(server_why_faulted) \
    TEST_ENTRY(server_prop_limits) \
    TEST_ENTRY(etcd_kv) \
    TEST_ENTRY(etcd_failures) \
    TEST_ENTRY(etcd_mirror) \
    TEST_ENTRY(etcd_lease_keepalive) \
    TEST_ENTRY(etcd_failover_limits) \
    TEST_ENTRY(etcd_txn_watch) \
    TEST_ENTRY(etcd_dead_peer) \
    TEST_ENTRY(etcd_mirror_writer_kill) \
    TEST_ENTRY(etcd_mirror_follows_after_resync) \
    TEST_ENTRY(etcd_mirror_resync_recreated_key) \
    TEST_ENTRY(etcd_mirror_history_reset) \
    TEST_ENTRY(etcd_watch_stop_inside) \
    TEST_ENTRY(etcd_long_keys) \
    TEST_ENTRY(etcd_backoff_accept_close) \
    TEST_ENTRY(etcd_host_names) \
    TEST_ENTRY(etcd_cluster_partition) \
    TEST_ENTRY(etcd_health) \
    TEST_ENTRY(etcd_tls) \
    TEST_ENTRY(etcd_auth) \
    TEST_ENTRY(server_on_etcd) \
    TEST_ENTRY(server_etcd_reconfigure_moving) \
    TEST_ENTRY(server_etcd_documents) \
    TEST_ENTRY(server_etcd_zones) \
    TEST_ENTRY(server_cluster_unbuildable_space) \
    TEST_ENTRY(server_move_exact) \
    TEST_ENTRY(server_move_drain_and_failures) \
    TEST_ENTRY(server_move_rebalance_on_join) \
    TEST_ENTRY(server_move_entity_settings) \
    TEST_ENTRY(server_move_source_dies) \
    TEST_ENTRY(server_move_etcd_stops) \
    TEST_ENTRY(server_unused_fields_ignored) \
    TEST_ENTRY(sync_forget_keeps_others) \
    TEST_ENTRY(server_ownership_log_release) \
    TEST_ENTRY(server_cluster_etcd_faults) \
    TEST_ENTRY(server_etcd_nospace) \
    TEST_ENTRY(server_etcd_tls_auth) \
    TEST_ENTRY(server_cluster_three_nodes) \
    TEST_ENTRY(server_cluster_client_redirects) \
    TEST_ENTRY(server_cluster_client_failover) \
    TEST_ENTRY(server_etcd_three_members) \
    TEST_ENTRY(etcd_no_false_history_reset) \
    TEST_ENTRY(server_etcd_health) \
    TEST_ENTRY(schema_entity_cases) \
    TEST_ENTRY(schema_entity_differential) \
    TEST_ENTRY(schema_space_cases)
