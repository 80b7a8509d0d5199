-- rpt_dead_letters: target writes refused for good (validation errors), with the vendor's
-- reason. The next run retries each of them, so fix the cause (mapping, limits, workspace) and
-- materialize the partition again.
select
    source_key,
    entity_type,
    parent_key,
    attempts,
    last_error as reason,
    updated_at
from ledger
where state = 'failed'
order by updated_at, source_key
